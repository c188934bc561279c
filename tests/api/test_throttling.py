"""Throttle counts live in a cache every web worker shares; an unreachable cache never fails a request."""
import logging
import os
import subprocess
import sys

import pytest
from django.test import override_settings

from tests.conftest import ROOT
from web.api import throttling

pytestmark = pytest.mark.django_db

# Nothing listens on port 1: every cache operation fails with a connection error.
REDIS_DOWN = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": "redis://127.0.0.1:1/0", "KEY_PREFIX": "crm-test",
                          "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25}}}


@pytest.fixture
def fresh_warning(monkeypatch):
    monkeypatch.setitem(throttling._last_warning, "at", float("-inf"))


def test_throttle_redis_down_api_reads_still_return_200(book, rep_client, fresh_warning, caplog):
    with override_settings(CACHES=REDIS_DOWN), caplog.at_level(logging.WARNING, logger="web.api.throttling"):
        detail = rep_client.get(f"/api/v1/customers/{book['mine'].pk}/")
        listed = rep_client.get("/api/v1/customers/", {"segment": book["loyal"].pk, "ordering": "-churn"})
        products = rep_client.get("/api/v1/products/")

    assert (detail.status_code, listed.status_code, products.status_code) == (200, 200, 200)
    assert detail.json()["insights"]["segment"]["name"] == "Loyal"
    assert "API throttling is off: the cache is unreachable" in caplog.text


def test_throttle_redis_down_anonymous_request_gets_401_not_500(book, client_for, fresh_warning):
    with override_settings(CACHES=REDIS_DOWN):
        response = client_for().get("/api/v1/customers/")

    assert response.status_code == 401


def test_throttle_redis_down_warning_is_logged_once_a_minute(book, rep_client, fresh_warning, caplog):
    with override_settings(CACHES=REDIS_DOWN), caplog.at_level(logging.WARNING, logger="web.api.throttling"):
        for _ in range(3):
            rep_client.get("/api/v1/products/")

    assert caplog.text.count("API throttling is off") == 1


def test_throttle_counts_are_seen_by_another_process(book, manager_client, manager):
    """What one web worker counted, another reads: the counts are not per process."""
    for _ in range(2):
        assert manager_client.get("/api/v1/products/").status_code == 200
    code = ("import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'crm.settings'); django.setup();"
            f"from web.api.throttling import UserRateThrottle; print(UserRateThrottle().counted('throttle_user_{manager.pk}'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=os.environ, capture_output=True, text=True,
                            timeout=120)

    assert result.stdout.strip() == "2", result.stderr[-2000:]


@pytest.fixture
def clock(monkeypatch):
    """The throttles' clock, set by the test (seconds since the epoch)."""
    from rest_framework.throttling import SimpleRateThrottle

    now = [0.0]
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "3/min", "anon": "2/min"})
    monkeypatch.setattr(SimpleRateThrottle, "timer", lambda self: now[0])
    return now


def test_throttle_window_boundary_does_not_reset_the_count(book, rep_client, other_rep, client_for, clock):
    """Three requests just before a minute ends and one just after: the fourth is refused (a plain
    per-minute counter would let it through), and Retry-After says when the next one is allowed."""
    clock[0] = 6_000_000 * 60 + 59.0
    assert [rep_client.get("/api/v1/products/").status_code for _ in range(3)] == [200, 200, 200]
    clock[0] += 1.5  # 0.5 s into the next minute
    refused = rep_client.get("/api/v1/products/")
    assert refused.status_code == 429
    wait = int(refused.headers["Retry-After"])
    assert 10 <= wait <= 60
    assert client_for(other_rep).get("/api/v1/products/").status_code == 200  # counted per user
    clock[0] += wait - 5
    assert rep_client.get("/api/v1/products/").status_code == 429  # still too early
    clock[0] += 5 + 2
    assert rep_client.get("/api/v1/products/").status_code == 200


def test_throttle_allows_the_rate_again_after_a_quiet_minute(book, rep_client, clock):
    clock[0] = 6_000_000 * 60 + 10.0
    assert [rep_client.get("/api/v1/products/").status_code for _ in range(4)] == [200, 200, 200, 429]
    clock[0] += 120
    assert [rep_client.get("/api/v1/products/").status_code for _ in range(4)] == [200, 200, 200, 429]
