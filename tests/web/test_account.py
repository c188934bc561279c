"""The account page: who you are, and your API tokens (create with a scope and lifetime, the key
shown once; list; revoke)."""
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from crm.models import ApiToken, AuditEvent
from crm.tokens import hash_key
from tests.conftest import api_key

ACCOUNT = reverse("account")
CREATE = reverse("account_token_create")


def revoke_url(token):
    return reverse("account_token_revoke", args=[token.pk])


def created_key(response) -> str:
    html = response.content.decode()
    start = html.index('id="new-key" type="text" value="') + len('id="new-key" type="text" value="')
    return html[start:html.index('"', start)]


@pytest.mark.parametrize("url", [ACCOUNT, CREATE, "/account/tokens/1/revoke/"])
def test_account_anonymous_redirects_to_login(client, db, url):
    response = client.post(url) if url != ACCOUNT else client.get(url)
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert not ApiToken.objects.exists()


def test_account_page_shows_name_and_role(client, make_user):
    from crm.models import ROLE_MANAGER

    client.force_login(make_user("grace", ROLE_MANAGER, first_name="Grace", last_name="Hopper"))
    html = client.get(ACCOUNT).content.decode()
    assert "Grace Hopper" in html and "grace" in html and "<dd>manager</dd>" in html


def test_account_page_without_token_offers_to_create_one(rep_client):
    html = rep_client.get(ACCOUNT).content.decode()
    assert "You have no API token." in html and f'action="{CREATE}"' in html


def test_account_token_actions_refuse_get(rep_client, rep):
    token = ApiToken.objects.get(key_hash=hash_key(api_key(rep)))
    assert rep_client.get(CREATE).status_code == 405
    assert rep_client.get(revoke_url(token)).status_code == 405
    assert ApiToken.objects.filter(user=rep).count() == 1 and ApiToken.objects.get().revoked_at is None


@pytest.mark.parametrize("action", ["create", "revoke"])
def test_account_token_actions_need_the_csrf_token(rep, action):
    client = Client(enforce_csrf_checks=True)
    client.force_login(rep)
    token = ApiToken.objects.get(key_hash=hash_key(api_key(rep)))
    assert client.post(CREATE if action == "create" else revoke_url(token)).status_code == 403
    assert list(ApiToken.objects.filter(user=rep).values_list("pk", "revoked_at")) == [(token.pk, None)]


def test_account_token_create_shows_the_key_once_and_stores_its_hash(rep_client, rep, settings):
    response = rep_client.post(CREATE, {"name": "weekly report", "scope": "read-only", "own_customers_only": "on",
                                        "expires_in_days": "30"})
    key = created_key(response)
    token = ApiToken.objects.get(user=rep)
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert token.key_hash == hash_key(key) and key not in token.key_hash and token.prefix == key[:8]
    assert (token.name, token.scope, token.own_customers_only) == ("weekly report", "read-only", True)
    assert token.expires_at - token.created_at == timedelta(days=30)
    html = rep_client.get(ACCOUNT).content.decode()
    assert key not in html and "weekly report" in html and f"{key[:8]}…" in html and "only those you own" in html


def test_account_token_create_defaults_to_the_setting(rep_client, rep, settings):
    settings.API_TOKEN_DAYS = 7
    html = rep_client.get(ACCOUNT).content.decode()
    assert 'name="expires_in_days" value="7"' in html
    rep_client.post(CREATE, {"name": "", "scope": "read-write", "expires_in_days": "7"})
    token = ApiToken.objects.get(user=rep)
    assert token.expires_at - token.created_at == timedelta(days=7) and token.name.startswith("token of ")


def test_account_token_create_refuses_a_lifetime_over_the_maximum(rep_client, rep, settings):
    settings.API_TOKEN_MAX_DAYS = 60
    response = rep_client.post(CREATE, {"name": "x", "scope": "read-write", "expires_in_days": "61"})
    html = response.content.decode()
    assert response.status_code == 400 and "No token was made" in html and "less than or equal to 60" in html
    assert not ApiToken.objects.exists()


def test_account_token_create_refuses_an_unknown_scope(rep_client, rep):
    response = rep_client.post(CREATE, {"name": "x", "scope": "admin", "expires_in_days": "5"})
    assert response.status_code == 400 and not ApiToken.objects.exists()


def test_account_lists_every_token_with_its_status(rep_client, rep):
    api_key(rep, name="live one")
    expired = ApiToken.objects.get(key_hash=hash_key(api_key(rep, name="old one")))
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=expired.created_at - timedelta(days=1))
    html = rep_client.get(ACCOUNT).content.decode()
    assert "live one" in html and "old one" in html and ">active<" in html and ">expired<" in html
    assert html.count("Revoke</button>") == 1  # only the active one


def test_account_token_revoke_revokes_it_and_the_key_stops_working(rep_client, rep, world):
    key = api_key(rep)
    token = ApiToken.objects.get(user=rep)
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/customers/").status_code == 200
    response = rep_client.post(revoke_url(token), follow=True)
    assert response.redirect_chain[-1][0] == ACCOUNT and "API token revoked" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None and ">revoked<" in response.content.decode()
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/customers/").status_code == 401


def test_account_token_revoke_touches_only_your_own(rep_client, rep, other_rep):
    api_key(other_rep)
    other = ApiToken.objects.get(user=other_rep)
    response = rep_client.post(revoke_url(other), follow=True)
    assert "nothing was revoked" in response.content.decode()
    other.refresh_from_db()
    assert other.revoked_at is None


def test_account_token_create_and_revoke_are_audited(rep_client, rep):
    key = created_key(rep_client.post(CREATE, {"name": "n", "scope": "read-only", "expires_in_days": "3"}))
    token = ApiToken.objects.get(user=rep)
    rep_client.post(revoke_url(token))
    events = list(AuditEvent.objects.filter(object_type="api_token").order_by("id")
                  .values_list("action", "actor", "object_id", "summary"))
    assert events == [("create", rep.pk, str(token.pk), "API token created: scope read-only, expires in 3 days"),
                      ("revoke", rep.pk, str(token.pk), "1 API token revoked")]
    assert not AuditEvent.objects.filter(summary__contains=key).exists()


def test_account_created_key_opens_the_api(rep_client, rep, world):
    key = created_key(rep_client.post(CREATE, {"name": "n", "scope": "read-write", "expires_in_days": "3"}))
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/customers/").status_code == 200


def test_account_link_in_the_navigation(rep_client):
    html = rep_client.get(reverse("home")).content.decode()
    assert f'<a href="{ACCOUNT}">Account</a>' in html


def test_account_page_marks_itself_current_in_the_navigation(rep_client):
    assert f'<a href="{ACCOUNT}" aria-current="page">Account</a>' in rep_client.get(ACCOUNT).content.decode()


@pytest.mark.parametrize("role", ["rep_client", "manager_client", "admin_client_"])
def test_account_page_renders_for_every_role(request, db, role):
    assert request.getfixturevalue(role).get(ACCOUNT).status_code == 200


def test_account_page_queries_are_bounded(rep_client, rep, django_assert_max_num_queries):
    for n in range(3):
        api_key(rep, name=f"t{n}")
    with django_assert_max_num_queries(5):  # session, user, roles, tokens, has an authenticator (the gate asks)
        assert rep_client.get(ACCOUNT).status_code == 200
