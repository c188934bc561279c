"""Security headers and the Content-Security-Policy, login lockout (django-axes) on the web,
admin and API log-ins, and session expiry. Every status code and header here goes through the
real URLs and middleware.

Headers on *every* URL are checked by tests/test_permission_matrix.py (each response it gets);
the browser check that pages run under the policy is tests/web/test_browser_csp.py.
"""
import os
import re
import subprocess
import sys
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from tests.conftest import ROOT

TEMPLATES = ROOT / "templates"


def csp_of(response) -> dict[str, list[str]]:
    """The Content-Security-Policy header as {directive: [sources]}."""
    policy = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *sources = part.split()
        policy[name] = sources
    return policy


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()  # the API's anonymous throttle counts live in the default cache
    yield
    cache.clear()


# --- headers and Content-Security-Policy --------------------------------------------------------

@pytest.mark.parametrize("path", ["/login/", "/admin/login/", "/api/v1/docs/", "/api/v1/redoc/", "/api/v1/schema/",
                                  "/api/v1/customers/", "/api/v1/no-such-thing/", "/no-such-page/"])
def test_headers_present_for_anonymous_pages_api_and_errors(client, db, path):
    response = client.get(path)

    assert "Content-Security-Policy" in response, path
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


def test_csp_site_policy_allows_only_own_scripts(client, rep):
    client.force_login(rep)
    policy = csp_of(client.get(reverse("home")))

    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no page asked for a nonce: no inline script can run
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"] and policy["base-uri"] == ["'self'"]


def test_csp_swagger_inline_script_carries_the_header_nonce(client, db):
    response = client.get("/api/v1/docs/")
    html = response.content.decode()

    nonce = [s for s in csp_of(response)["script-src"] if s.startswith("'nonce-")]
    assert len(nonce) == 1 and "'unsafe-inline'" not in csp_of(response)["script-src"]
    inline_scripts = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html)
    assert inline_scripts and all(f'nonce="{nonce[0][7:-1]}"' in attrs for attrs in inline_scripts)


def test_csp_nonce_differs_per_response(client, db):
    first, second = (csp_of(client.get("/api/v1/docs/"))["script-src"] for _ in range(2))

    assert first != second


def test_csp_redoc_relaxes_styles_only(client, db):
    policy = csp_of(client.get("/api/v1/redoc/"))

    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    assert policy["worker-src"] == ["'self'", "blob:"]
    assert "'unsafe-inline'" not in policy["script-src"] and any(s.startswith("'nonce-") for s in policy["script-src"])


# The site-wide policy refuses these; anything of the kind must move to static/crm/site.js or
# site.css (or carry the request's nonce, as the API docs templates do).
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\b(src|nonce)=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
HANDLER_ATTR = re.compile(r"\son[a-z]+\s*=", re.I)
STYLE_ATTR = re.compile(r"\sstyle\s*=", re.I)
STYLE_ELEMENT = re.compile(r"<style(?![^>]*\bnonce=)[^>]*>", re.I)


@pytest.mark.parametrize("path", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_csp_templates_have_no_inline_script_handler_or_style(path):
    html = path.read_text(encoding="utf-8")

    for pattern in (INLINE_SCRIPT, HANDLER_ATTR, STYLE_ATTR, STYLE_ELEMENT):
        assert not pattern.search(html), f"{path.relative_to(ROOT)}: {pattern.search(html).group(0)!r}"


def test_csp_template_check_catches_an_inline_style():
    assert STYLE_ATTR.search('<span class="x" style="width:3%">') and INLINE_SCRIPT.search("<script>go()</script>")
    assert not INLINE_SCRIPT.search('<script id="c" type="application/json">{}</script>')


# --- login lockout -----------------------------------------------------------------------------

@pytest.fixture
def limit_3(settings):
    settings.AXES_FAILURE_LIMIT = 3
    return 3


def _web_login(client, password, username="rep1", path="/login/", ip="10.0.0.1"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_lockout_web_login_blocks_after_the_limit_with_a_message(client, rep, limit_3):
    statuses = [_web_login(client, "wrong").status_code for _ in range(limit_3)]

    assert statuses == [200, 200, 429]
    response = _web_login(client, "pw-rep1-Secret1")  # the right password no longer helps
    assert response.status_code == 429
    assert "Too many failed log-ins" in response.content.decode() and "15 minutes" in response.content.decode()
    assert "Content-Security-Policy" in response
    assert client.get(reverse("home")).status_code == 302  # not signed in


def test_lockout_web_login_does_not_block_the_same_user_elsewhere(client, rep, limit_3):
    for _ in range(limit_3):
        _web_login(client, "wrong", ip="10.0.0.1")

    response = _web_login(client, "pw-rep1-Secret1", ip="10.0.0.2")
    assert response.status_code == 302 and response.url == reverse("home")


def test_lockout_web_login_does_not_block_other_users_from_that_address(client, rep, other_rep, limit_3):
    for _ in range(limit_3):
        _web_login(client, "wrong", username="rep1")

    assert _web_login(client, "pw-rep2-Secret1", username="rep2").status_code == 302


def test_lockout_success_resets_the_failure_count(client, rep, limit_3):
    for _ in range(limit_3 - 1):
        _web_login(client, "wrong")
    assert _web_login(client, "pw-rep1-Secret1").status_code == 302
    client.post(reverse("logout"))

    statuses = [_web_login(client, "wrong").status_code for _ in range(limit_3 - 1)]
    assert statuses == [200] * (limit_3 - 1)


def test_lockout_ends_after_the_cool_off(client, rep, limit_3, settings):
    for _ in range(limit_3):
        _web_login(client, "wrong")
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))

    assert _web_login(client, "pw-rep1-Secret1").status_code == 302


def test_lockout_admin_login_blocks_after_the_limit(client, admin_user, limit_3):
    statuses = [_web_login(client, "wrong", username="root", path="/admin/login/").status_code
                for _ in range(limit_3)]

    assert statuses == [200, 200, 429]
    response = _web_login(client, "pw-root-Secret1", username="root", path="/admin/login/")
    assert response.status_code == 429 and "Too many failed log-ins" in response.content.decode()


def test_lockout_web_and_api_share_one_count(client, rep, limit_3):
    for _ in range(limit_3 - 1):
        _web_login(client, "wrong", ip="127.0.0.1")

    response = APIClient().post("/api/v1/auth/token/", {"username": "rep1", "password": "wrong"})
    assert response.status_code == 429


def test_lockout_api_token_uses_the_api_error_format(rep, limit_3):
    api = APIClient()
    statuses = [api.post("/api/v1/auth/token/", {"username": "rep1", "password": "wrong"}).status_code
                for _ in range(limit_3)]

    response = api.post("/api/v1/auth/token/", {"username": "rep1", "password": "pw-rep1-Secret1"})
    assert statuses == [401, 401, 429]
    assert response.status_code == 429
    assert response.json() == {"error": {"code": "locked_out", "fields": {},
                                         "message": response.json()["error"]["message"]}}
    assert "Too many failed log-ins" in response.json()["error"]["message"]
    assert int(response["Retry-After"]) == 15 * 60
    assert "token" not in response.json()


def test_lockout_settings_come_from_the_environment():
    code = "from django.conf import settings; print(settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME)"
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={**_clean_env(), "LOGIN_FAILURE_LIMIT": "7", "LOGIN_COOLOFF_MINUTES": "2"})

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["7", "0:02:00"]


def test_lockout_bad_limit_fails_loudly_naming_the_variable():
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                            env={**_clean_env(), "LOGIN_FAILURE_LIMIT": "0"})

    assert result.returncode != 0 and "LOGIN_FAILURE_LIMIT='0' must be at least 1" in result.stderr


def _clean_env():
    return {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}}


# --- sessions ----------------------------------------------------------------------------------

def test_session_lasts_session_cookie_age(client, rep, settings):
    settings.SESSION_COOKIE_AGE = 600
    _web_login(client, "pw-rep1-Secret1")

    session = Session.objects.get()
    assert abs((session.expire_date - timezone.now()).total_seconds() - 600) < 30


def test_session_expired_is_sent_to_login(client, rep):
    client.force_login(rep)
    assert client.get(reverse("home")).status_code == 200
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))

    response = client.get(reverse("home"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
