"""The account page: who you are, and your API token (create, regenerate, revoke; the key shown once)."""
import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from crm import services

ACCOUNT = reverse("account")
CREATE, REGENERATE, REVOKE = (reverse(f"account_token_{a}") for a in ("create", "regenerate", "revoke"))


# --- services -----------------------------------------------------------------------------------------

def test_create_token_makes_a_token_for_a_user_without_one(rep):
    token = services.create_token(rep)
    assert Token.objects.get(user=rep).key == token.key


def test_create_token_refuses_when_the_user_has_one(rep):
    first = services.create_token(rep)
    with pytest.raises(services.TokenExists):
        services.create_token(rep)
    assert list(Token.objects.filter(user=rep).values_list("key", flat=True)) == [first.key]


def test_regenerate_token_replaces_the_key(rep):
    old = services.create_token(rep).key
    new = services.regenerate_token(rep).key
    assert new != old and list(Token.objects.filter(user=rep).values_list("key", flat=True)) == [new]


# --- the page -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [ACCOUNT, CREATE, REGENERATE, REVOKE])
def test_account_anonymous_redirects_to_login(client, db, url):
    response = client.post(url) if url != ACCOUNT else client.get(url)
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert not Token.objects.exists()


def test_account_page_shows_name_and_role(client, make_user):
    from crm.models import ROLE_MANAGER

    client.force_login(make_user("grace", ROLE_MANAGER, first_name="Grace", last_name="Hopper"))
    html = client.get(ACCOUNT).content.decode()
    assert "Grace Hopper" in html and "grace" in html and "<dd>manager</dd>" in html


def test_account_page_without_token_offers_to_create_one(rep_client):
    html = rep_client.get(ACCOUNT).content.decode()
    assert "You have no API token." in html and f'action="{CREATE}"' in html


@pytest.mark.parametrize("url", [CREATE, REGENERATE, REVOKE])
def test_account_token_actions_refuse_get(rep_client, rep, url):
    assert rep_client.get(url).status_code == 405
    assert not Token.objects.filter(user=rep).exists()


@pytest.mark.parametrize("url", [CREATE, REGENERATE, REVOKE])
def test_account_token_actions_need_the_csrf_token(rep, url):
    client = Client(enforce_csrf_checks=True)
    client.force_login(rep)
    key = Token.objects.create(user=rep).key if url == REVOKE else None
    assert client.post(url).status_code == 403
    assert list(Token.objects.filter(user=rep).values_list("key", flat=True)) == ([key] if key else [])


def test_account_token_create_shows_the_key_once(rep_client, rep):
    response = rep_client.post(CREATE)
    key = Token.objects.get(user=rep).key
    assert response.status_code == 200 and f'value="{key}"' in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert key not in rep_client.get(ACCOUNT).content.decode()


def test_account_page_never_shows_an_existing_key(rep_client, rep):
    key = Token.objects.create(user=rep).key
    html = rep_client.get(ACCOUNT).content.decode()
    assert key not in html and "You have a token" in html and f'action="{REGENERATE}"' in html


def test_account_token_create_when_one_exists_changes_and_shows_nothing(rep_client, rep):
    key = Token.objects.create(user=rep).key
    response = rep_client.post(CREATE, follow=True)
    assert key not in response.content.decode() and "You already have an API token" in response.content.decode()
    assert Token.objects.get(user=rep).key == key


def test_account_token_regenerate_replaces_the_key(rep_client, rep):
    old = Token.objects.create(user=rep).key
    response = rep_client.post(REGENERATE)
    new = Token.objects.get(user=rep).key
    assert new != old and f'value="{new}"' in response.content.decode()


def test_account_token_revoke_deletes_it(rep_client, rep):
    Token.objects.create(user=rep)
    response = rep_client.post(REVOKE, follow=True)
    assert response.redirect_chain[-1][0] == ACCOUNT and "API token revoked" in response.content.decode()
    assert not Token.objects.filter(user=rep).exists()


def test_account_token_revoke_touches_only_your_own(rep_client, rep, other_rep):
    Token.objects.create(user=rep)
    other = Token.objects.create(user=other_rep).key
    rep_client.post(REVOKE)
    assert Token.objects.get(user=other_rep).key == other


def test_account_created_key_opens_the_api(rep_client, rep, world):
    rep_client.post(CREATE)
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=rep).key}")
    assert api.get("/api/v1/customers/").status_code == 200


def test_account_revoked_key_no_longer_opens_the_api(rep_client, rep, world):
    key = Token.objects.create(user=rep).key
    rep_client.post(REVOKE)
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/customers/").status_code == 401


def test_account_link_in_the_navigation(rep_client):
    html = rep_client.get(reverse("home")).content.decode()
    assert f'<a href="{ACCOUNT}">Account</a>' in html


def test_account_page_marks_itself_current_in_the_navigation(rep_client):
    assert f'<a href="{ACCOUNT}" aria-current="page">Account</a>' in rep_client.get(ACCOUNT).content.decode()


@pytest.mark.parametrize("role", ["rep_client", "manager_client", "admin_client_"])
def test_account_page_renders_for_every_role(request, db, role):
    assert request.getfixturevalue(role).get(ACCOUNT).status_code == 200


def test_account_page_queries_are_bounded(rep_client, rep, django_assert_max_num_queries):
    Token.objects.create(user=rep)
    with django_assert_max_num_queries(5):  # session, user, roles, token, has an authenticator (the gate asks)
        assert rep_client.get(ACCOUNT).status_code == 200
