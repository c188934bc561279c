"""Authentication, roles and the one error format, through the real URLs."""
import pytest
from rest_framework.throttling import SimpleRateThrottle

from crm.models import ApiToken
from crm.tokens import hash_key
from tests.api.conftest import error_of
from tests.conftest import api_key

pytestmark = pytest.mark.django_db


def test_unauthenticated_request_is_401_with_token_challenge(client_for):
    response = client_for().get("/api/v1/customers/")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"
    assert error_of(response)["code"] == "not_authenticated"


def test_bad_token_is_401(client_for):
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")

    response = client.get("/api/v1/customers/")

    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


def test_user_without_role_is_403(client_for, make_user):
    response = client_for(make_user("nobody")).get("/api/v1/customers/")

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"


def test_token_endpoint_issues_token_for_credentials_and_it_authenticates(client_for, rep):
    response = client_for().post("/api/v1/auth/token/", {"username": "rep1", "password": "pw-rep1-Secret1"})
    assert response.status_code == 201
    key = response.json()["token"]
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    assert client.get("/api/v1/customers/").status_code == 200
    assert ApiToken.objects.get(user=rep).key_hash == hash_key(key)


def test_token_endpoint_refuses_wrong_password_with_401(client_for, rep):
    response = client_for().post("/api/v1/auth/token/", {"username": "rep1", "password": "wrong"})

    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


def test_token_endpoint_makes_a_new_token_each_time_even_when_signed_in(rep_client, rep):
    credentials = {"username": "rep1", "password": "pw-rep1-Secret1"}
    first = rep_client.post("/api/v1/auth/token/", credentials).json()["token"]
    again = rep_client.post("/api/v1/auth/token/", credentials).json()["token"]

    assert first != again
    assert set(ApiToken.objects.filter(user=rep).values_list("key_hash", flat=True)) == {hash_key(first),
                                                                                        hash_key(again)}


def test_revoked_token_no_longer_authenticates(client_for, rep):
    key = api_key(rep)
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    assert client.delete("/api/v1/auth/token/").status_code == 204
    response = client.get("/api/v1/customers/")
    assert response.status_code == 401 and error_of(response)["message"] == "Token revoked."
    assert ApiToken.objects.get(user=rep).revoked_at is not None


def test_tokens_are_managed_in_the_admin(client_for, admin_user, rep):
    api_key(rep, name="nightly sync")

    response = client_for(admin_user).get("/admin/crm/apitoken/")

    assert response.status_code == 200 and b"rep1" in response.content and b"nightly sync" in response.content


def test_unknown_api_path_is_404_in_error_format(manager_client):
    response = manager_client.post("/api/v1/no-such-thing/", {})

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_method_not_allowed_is_405_in_error_format(manager_client):
    response = manager_client.delete("/api/v1/segments/")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_malformed_json_is_400_parse_error(manager_client):
    response = manager_client.post("/api/v1/customers/", "{not json", content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_validation_error_names_the_field(manager_client):
    response = manager_client.post("/api/v1/customers/", {"name": "No key", "email": "not-an-email"})

    error = error_of(response)
    assert response.status_code == 400 and error["code"] == "invalid"
    assert set(error["fields"]) == {"external_id", "email"}


def test_unsupported_media_type_is_415(manager_client):
    response = manager_client.post("/api/v1/customers/", "external_id=x", content_type="text/plain")

    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


@pytest.fixture
def low_rates(monkeypatch):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "3/min", "anon": "2/min"})


def test_signed_in_user_is_throttled_with_429(low_rates, rep_client):
    statuses = [rep_client.get("/api/v1/products/").status_code for _ in range(4)]

    response = rep_client.get("/api/v1/products/")
    assert statuses == [200, 200, 200, 429]
    assert error_of(response)["code"] == "throttled" and int(response.headers["Retry-After"]) > 0


def test_anonymous_password_guessing_is_throttled(low_rates, client_for, rep):
    client = client_for()
    statuses = [client.post("/api/v1/auth/token/", {"username": "rep1", "password": "guess"}).status_code
                for _ in range(3)]

    assert statuses == [401, 401, 429]
