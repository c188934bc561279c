"""Throttle counts live in a cache every web worker shares; an unreachable cache never fails a request."""
import logging
import os
import subprocess
import sys

import pytest
from django.test import override_settings

from crm.api import throttling
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db

# Nothing listens on port 1: every cache operation fails with a connection error.
REDIS_DOWN = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": "redis://127.0.0.1:1/0", "KEY_PREFIX": "crm-test",
                          "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25}}}


@pytest.fixture
def fresh_warning(monkeypatch):
    monkeypatch.setitem(throttling._last_warning, "at", float("-inf"))


def test_throttle_redis_down_api_reads_still_return_200(book, rep_client, fresh_warning, caplog):
    with override_settings(CACHES=REDIS_DOWN), caplog.at_level(logging.WARNING, logger="crm.api.throttling"):
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
    with override_settings(CACHES=REDIS_DOWN), caplog.at_level(logging.WARNING, logger="crm.api.throttling"):
        for _ in range(3):
            rep_client.get("/api/v1/products/")

    assert caplog.text.count("API throttling is off") == 1


def test_throttle_counts_are_seen_by_another_process(book, manager_client, manager):
    """What one web worker counted, another reads: the counts are not per process."""
    for _ in range(2):
        assert manager_client.get("/api/v1/products/").status_code == 200
    code = ("import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'crm.settings'); django.setup();"
            f"from django.core.cache import cache; print(len(cache.get('throttle_user_{manager.pk}', [])))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=os.environ, capture_output=True, text=True,
                            timeout=120)

    assert result.stdout.strip() == "2", result.stderr[-2000:]
