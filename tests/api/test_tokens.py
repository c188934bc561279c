"""Scoped API tokens (issue 18): read-only refuses every write the schema documents, expiry and
revocation take effect on the next request, own-customers-only narrows what a manager sees, the
key is never stored, and POST /auth/token/ takes JSON or form data."""
import importlib
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from crm import clock, tokens
from crm.models import ApiToken, AuditEvent, Customer, FollowUp, ImportFile, ImportRun, Interaction, WebhookEndpoint
from crm.tokens import hash_key
from tests.api.conftest import error_of
from tests.conftest import api_key

pytestmark = pytest.mark.django_db
WRITE_METHODS = ("post", "put", "patch", "delete")


def client_with(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def operations(methods):
    """(path template, method) of every operation of the served schema with one of ``methods``."""
    schema = APIClient().get("/api/v1/schema/", {"format": "json"}).json()
    return sorted((path, method) for path, ops in schema["paths"].items() for method in ops if method in methods)


@pytest.fixture
def objects(book):
    """The real object ids that fill each kind of path parameter: the book's, a run, an import."""
    imported = ImportRun.objects.create(source="api", dry_run=True)
    ImportFile.objects.create(run=imported, kind="customers", filename="customers.csv")
    followup = FollowUp.objects.create(customer=book["mine"], owner=book["mine"].owner, type="call",
                                       due_at=timezone.now(), note="call back")
    webhook = WebhookEndpoint.objects.create(url="https://hooks.example.com/crm", events=["run.published"])
    return {"{id}": {"follow-ups": followup.pk, "webhooks": webhook.pk, "customers": book["mine"].pk, "interactions": Interaction.objects.get(customer=book["mine"]).pk,
                     "training-runs": book["runs"]["segmentation"].pk, "segments": book["loyal"].pk,
                     "imports": imported.pk},
            "{external_id}": {"customers": book["mine"].external_id, "interactions": f"I-{book['mine'].external_id}"},
            "{sku}": {"products": book["toy"].sku}}


def fill(path: str, objects) -> str:
    """A schema path with its parameters set to real objects of the right kind (by the path's first part)."""
    kind = path.split("/")[3]
    for parameter, values in objects.items():
        path = path.replace(parameter, str(values.get(kind, "")))
    return path


def _row_counts():
    return {m._meta.label: m.objects.count() for label in ("crm", "ml") for m in apps.get_app_config(label).get_models()
            if m is not ApiToken}  # last_used_at is the token's own bookkeeping


# --- scope ---------------------------------------------------------------------------------------

def test_read_only_token_is_refused_every_write_operation_of_the_schema(objects, admin_user):
    client = client_with(api_key(admin_user, scope="read-only"))
    writes = operations(WRITE_METHODS)
    assert len(writes) > 20  # the whole API, not a sample
    before, wrong = _row_counts(), []
    for path, method in writes:
        response = getattr(client, method)(fill(path, objects), {}, format="json")
        if response.status_code != 403 or "read-only" not in error_of(response)["message"]:
            wrong.append(f"{method.upper()} {path}: {response.status_code} {response.content[:200]!r}")
    assert not wrong, "\n".join(wrong)
    assert _row_counts() == before
    assert ApiToken.objects.get().revoked_at is None  # DELETE /auth/token/ is a write too


def test_read_only_token_reads_every_get_operation_of_the_schema(objects, admin_user):
    client = client_with(api_key(admin_user, scope="read-only"))
    reads = operations(("get",))
    statuses = {f"GET {path}": client.get(fill(path, objects)).status_code for path, _ in reads}
    assert len(reads) > 15 and set(statuses.values()) == {200}, statuses


def test_read_write_token_writes(book, manager):
    client = client_with(api_key(manager, scope="read-write"))
    response = client.patch(f"/api/v1/customers/{book['mine'].pk}/", {"city": "Lyon"}, format="json")
    assert response.status_code == 200 and Customer.objects.get(pk=book["mine"].pk).city == "Lyon"


def test_session_requests_are_not_limited_by_any_token(book, manager_client, manager):
    api_key(manager, scope="read-only", own_customers_only=True)
    response = manager_client.patch(f"/api/v1/customers/{book['theirs'].pk}/", {"city": "Oslo"}, format="json")
    assert response.status_code == 200


# --- expiry and revocation -------------------------------------------------------------------------

def test_token_gets_401_after_it_expires(book, rep, monkeypatch, settings):
    settings.API_TOKEN_DAYS = 30
    client = client_with(api_key(rep))
    assert client.get("/api/v1/customers/").status_code == 200
    later = timezone.now() + timedelta(days=30, seconds=1)
    monkeypatch.setattr(clock, "now", lambda: later)

    response = client.get("/api/v1/customers/")

    assert response.status_code == 401 and error_of(response)["message"] == "Token expired."
    assert response.headers["WWW-Authenticate"] == "Token"


def test_token_with_expiry_in_the_past_gets_401(book, rep):
    key = api_key(rep)
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client_with(key).get(f"/api/v1/customers/{book['mine'].pk}/").status_code == 401


def test_revoked_token_gets_401_on_the_next_request(book, rep):
    key = api_key(rep)
    client = client_with(key)
    assert client.get("/api/v1/customers/").status_code == 200
    tokens.revoke_token(rep, ApiToken.objects.get().pk)

    response = client.get("/api/v1/customers/")

    assert response.status_code == 401 and error_of(response)["message"] == "Token revoked."


def test_delete_revokes_only_the_token_of_the_request(book, rep):
    kept, revoked = api_key(rep, name="kept"), api_key(rep, name="gone")
    assert client_with(revoked).delete("/api/v1/auth/token/").status_code == 204
    assert client_with(revoked).get("/api/v1/customers/").status_code == 401
    assert client_with(kept).get("/api/v1/customers/").status_code == 200


def test_delete_with_a_session_names_what_to_send(rep_client):
    response = rep_client.delete("/api/v1/auth/token/")
    assert response.status_code == 400 and "Authorization: Token" in error_of(response)["message"]


# --- own customers only --------------------------------------------------------------------------------

def test_own_customers_only_token_of_a_manager_sees_only_the_managers_customers(book, manager):
    own = Customer.objects.create(external_id="C-BOSS", name="Boss's", owner=manager)
    limited = client_with(api_key(manager, own_customers_only=True))
    full = client_with(api_key(manager))

    assert {c["id"] for c in full.get("/api/v1/customers/").json()["results"]} == \
        {own.pk, book["mine"].pk, book["theirs"].pk, book["free"].pk}
    assert [c["id"] for c in limited.get("/api/v1/customers/").json()["results"]] == [own.pk]
    assert limited.get(f"/api/v1/customers/{own.pk}/").status_code == 200
    for other in ("mine", "theirs", "free"):
        customer = book[other]
        assert limited.get(f"/api/v1/customers/{customer.pk}/").status_code == 404
        assert limited.get(f"/api/v1/customers/by-external-id/{customer.external_id}/").status_code == 404
        assert limited.get(f"/api/v1/customers/{customer.pk}/recommendations/").status_code == 404
        assert limited.get(f"/api/v1/customers/{customer.pk}/personal-data/").status_code == 404
        assert limited.patch(f"/api/v1/customers/{customer.pk}/", {"city": "X"}, format="json").status_code == 404
    assert limited.get("/api/v1/interactions/").json()["results"] == []
    assert limited.get(f"/api/v1/products/{book['toy'].sku}/prospects/").json() == []
    assert len(full.get(f"/api/v1/products/{book['toy'].sku}/prospects/").json()) == 3


def test_own_customers_only_token_of_a_rep_drops_the_unassigned(book, rep):
    limited = client_with(api_key(rep, own_customers_only=True))
    assert [c["id"] for c in limited.get("/api/v1/customers/").json()["results"]] == [book["mine"].pk]
    assert limited.get(f"/api/v1/customers/{book['free'].pk}/").status_code == 404


def test_own_customers_only_token_may_not_import(book, manager):
    limited = client_with(api_key(manager, own_customers_only=True))
    assert limited.get("/api/v1/imports/").status_code == 403
    assert client_with(api_key(manager)).get("/api/v1/imports/").status_code == 200


# --- storage and the one-query read -----------------------------------------------------------------

def test_key_is_not_stored_in_clear(rep):
    key = api_key(rep)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(ApiToken._meta.db_table)}")  # noqa: S608
        row = cursor.fetchone()
    assert hash_key(key) in row and not any(key in str(value) for value in row)
    assert not AuditEvent.objects.filter(summary__contains=key).exists()


def test_authentication_is_one_query_and_last_used_is_written_once_a_minute(book, rep, monkeypatch):
    client = client_with(api_key(rep))
    start = timezone.now()
    monkeypatch.setattr(clock, "now", lambda: start)
    with CaptureQueriesContext(connection) as first:
        client.get(f"/api/v1/customers/{book['mine'].pk}/")
    with CaptureQueriesContext(connection) as second:
        client.get(f"/api/v1/customers/{book['mine'].pk}/")
    monkeypatch.setattr(clock, "now", lambda: start + timedelta(seconds=61))
    with CaptureQueriesContext(connection) as later:
        client.get(f"/api/v1/customers/{book['mine'].pk}/")

    def token_queries(captured):
        return [q["sql"] for q in captured.captured_queries if '"crm_apitoken"' in q["sql"]]
    assert len(token_queries(first)) == 2 and token_queries(first)[1].startswith("UPDATE")
    assert len(token_queries(second)) == 1  # the read of token, user and roles only
    assert len(token_queries(later)) == 2
    assert ApiToken.objects.get().last_used_at == start + timedelta(seconds=61)


# --- POST /auth/token/ -------------------------------------------------------------------------------

CREDENTIALS = {"username": "rep1", "password": "pw-rep1-Secret1"}


@pytest.mark.parametrize("body_format", ["json", "multipart", "urlencoded"])
def test_token_endpoint_accepts_json_and_form_data(rep, body_format):
    body = {**CREDENTIALS, "name": "sync", "scope": "read-only", "own_customers_only": "true",
            "expires_in_days": "10"}
    client = APIClient()
    if body_format == "urlencoded":
        from urllib.parse import urlencode  # only this case sends a hand-encoded body

        response = client.post("/api/v1/auth/token/", urlencode(body), content_type="application/x-www-form-urlencoded")
    else:
        response = client.post("/api/v1/auth/token/", body, format=body_format)

    assert response.status_code == 201, response.content
    data = response.json()
    token = ApiToken.objects.get(user=rep)
    assert (data["name"], data["scope"], data["own_customers_only"]) == ("sync", "read-only", True)
    assert token.key_hash == hash_key(data["token"]) and data["id"] == token.pk
    assert token.expires_at - token.created_at == timedelta(days=10)
    assert data["expires_at"].startswith(timezone.localtime(token.expires_at).strftime("%Y-%m-%dT%H:%M"))


def test_token_endpoint_defaults(rep, settings):
    settings.API_TOKEN_DAYS = 5
    data = APIClient().post("/api/v1/auth/token/", CREDENTIALS, format="json").json()
    token = ApiToken.objects.get()
    assert (data["scope"], data["own_customers_only"], token.expires_at - token.created_at) == \
        ("read-write", False, timedelta(days=5))
    assert re.fullmatch(r"token of \d{4}-\d\d-\d\d", data["name"])


@pytest.mark.parametrize("body_format", ["json", "multipart"])
def test_token_endpoint_empty_body_is_400_naming_the_missing_fields(db, body_format):
    response = APIClient().post("/api/v1/auth/token/", {}, format=body_format)

    error = error_of(response)
    assert response.status_code == 400 and error["code"] == "invalid"
    assert set(error["fields"]) == {"username", "password"} and "username" in error["message"]


def test_token_endpoint_refuses_a_lifetime_over_the_maximum(rep, settings):
    settings.API_TOKEN_MAX_DAYS = 30
    response = APIClient().post("/api/v1/auth/token/", {**CREDENTIALS, "expires_in_days": 31}, format="json")
    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"expires_in_days"}
    assert "30" in error_of(response)["message"] and not ApiToken.objects.exists()


def test_token_endpoint_refuses_an_unknown_scope(rep):
    response = APIClient().post("/api/v1/auth/token/", {**CREDENTIALS, "scope": "admin"}, format="json")
    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"scope"}


def test_read_only_token_cannot_mint_a_read_write_one(rep):
    response = client_with(api_key(rep, scope="read-only")).post("/api/v1/auth/token/", CREDENTIALS, format="json")
    assert response.status_code == 403 and ApiToken.objects.count() == 1


def test_create_token_service_refuses_lifetimes_out_of_range(rep, settings):
    settings.API_TOKEN_MAX_DAYS = 10
    for days in (0, 11):
        with pytest.raises(tokens.TokenRefused):
            tokens.create_token(rep, expires_in_days=days)
    assert not ApiToken.objects.exists()


# --- the admin -------------------------------------------------------------------------------------

def test_admin_lists_tokens_without_hash_and_revokes(client, admin_user, rep):
    key = api_key(rep, name="ci job")
    token = ApiToken.objects.get()
    client.force_login(admin_user)
    listing = client.get("/admin/crm/apitoken/").content.decode()
    detail = client.get(f"/admin/crm/apitoken/{token.pk}/change/").content.decode()
    assert "ci job" in listing and token.key_hash not in listing and token.key_hash not in detail
    assert key not in listing and key not in detail

    response = client.post("/admin/crm/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}, follow=True)

    assert "1 API token revoked" in response.content.decode()
    assert client_with(key).get("/api/v1/customers/").status_code == 401
    assert AuditEvent.objects.filter(action="revoke", actor=admin_user, object_id=str(token.pk)).exists()


def test_admin_cannot_add_tokens(client, admin_user):
    client.force_login(admin_user)
    assert client.get("/admin/crm/apitoken/add/").status_code == 403


# --- the data migration ------------------------------------------------------------------------------

def test_migration_moves_drf_tokens_hashed_and_drops_their_table(rep, settings):
    migration = importlib.import_module("crm.migrations.0012_api_tokens")
    quote = connection.ops.quote_name
    key = "a" * 40
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {quote('authtoken_token')} ({quote('key')} varchar(40) PRIMARY KEY, "
                       f"{quote('created')} timestamp with time zone NOT NULL, {quote('user_id')} integer NOT NULL)"
                       if connection.vendor == "postgresql" else
                       f"CREATE TABLE {quote('authtoken_token')} ({quote('key')} varchar(40) PRIMARY KEY, "
                       f"{quote('created')} datetime NOT NULL, {quote('user_id')} integer NOT NULL)")
        cursor.execute(f"INSERT INTO {quote('authtoken_token')} VALUES (%s, %s, %s)",  # noqa: S608
                       [key, timezone.now() - timedelta(days=400), rep.pk])

    migration.move_drf_tokens(apps, SimpleNamespace(connection=connection))

    token = ApiToken.objects.get()
    assert (token.name, token.user_id, token.scope, token.key_hash) == ("migrated", rep.pk, "read-write", hash_key(key))
    assert token.expires_at - timezone.now() > timedelta(days=settings.API_TOKEN_DAYS - 1)
    assert "authtoken_token" not in connection.introspection.table_names()
    assert client_with(key).get("/api/v1/products/").status_code == 200


def test_migration_without_drf_tokens_does_nothing(db):
    migration = importlib.import_module("crm.migrations.0012_api_tokens")
    migration.move_drf_tokens(apps, SimpleNamespace(connection=connection))
    assert not ApiToken.objects.exists()

