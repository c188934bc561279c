"""The client's address (crm.clientip) behind reverse proxies: X-Forwarded-For is read only when
TRUSTED_PROXY_COUNT or TRUSTED_PROXIES say there are proxies, and then counted from the right.
The login lockout and the audit trail take the same address, through the real URLs."""
import ipaddress
import os
import subprocess
import sys

import pytest
from django.core.cache import cache
from django.test import RequestFactory
from django.urls import reverse

from crm.clientip import client_ip
from crm.models import AuditEvent
from tests.conftest import ROOT
from web.api.throttling import AnonRateThrottle

PROXY = "10.0.0.9"


@pytest.fixture
def limit_3(settings):
    settings.AXES_FAILURE_LIMIT = 3
    return 3


@pytest.fixture
def one_proxy(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    return settings


def _login(client, password, forwarded_for=None, remote=PROXY):
    extra = {"REMOTE_ADDR": remote}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client.post("/login/", {"username": "rep1", "password": password}, **extra)


def _request(remote=PROXY, forwarded_for=None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return RequestFactory().get("/", **extra)


# --- the rule --------------------------------------------------------------------------------------

def test_client_ip_without_trusted_proxies_never_reads_the_header(settings):
    assert settings.TRUSTED_PROXY_COUNT == 0 and settings.TRUSTED_PROXIES == []  # the defaults

    assert client_ip(_request(forwarded_for="203.0.113.5")) == PROXY


@pytest.mark.parametrize(("count", "forwarded_for", "expected"), [
    (1, "203.0.113.5", "203.0.113.5"),
    (1, "198.51.100.1, 203.0.113.5", "203.0.113.5"),  # the client's own entry on the left is ignored
    (2, "198.51.100.1, 203.0.113.5, 10.0.0.2", "203.0.113.5"),
    (2, "203.0.113.5", PROXY),  # fewer entries than proxies: not the configured way in
    (1, None, PROXY),
    (1, "203.0.113.5:4711", PROXY),  # not a bare address
    (1, "2001:db8::0:1", "2001:db8::1"),
], ids=["one", "forged-left", "two", "too-few", "no-header", "port", "ipv6"])
def test_client_ip_counts_trusted_proxies_from_the_right(settings, count, forwarded_for, expected):
    settings.TRUSTED_PROXY_COUNT = count

    assert client_ip(_request(forwarded_for=forwarded_for)) == expected


@pytest.mark.parametrize(("remote", "forwarded_for", "expected"), [
    (PROXY, "198.51.100.1, 203.0.113.5", "203.0.113.5"),
    (PROXY, "198.51.100.1, 203.0.113.5, 10.0.0.3", "203.0.113.5"),  # two proxies of the network
    ("192.0.2.44", "203.0.113.5", "192.0.2.44"),  # not from a trusted proxy: the header is the client's own
    (PROXY, "10.0.0.3", "10.0.0.3"),  # a client inside the proxies' network
], ids=["one", "two", "untrusted-sender", "all-trusted"])
def test_client_ip_skips_trusted_proxy_addresses_from_the_right(settings, remote, forwarded_for, expected):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/24")]

    assert client_ip(_request(remote=remote, forwarded_for=forwarded_for)) == expected


def test_client_ip_is_the_api_anonymous_throttle_key(settings):
    throttle = AnonRateThrottle()

    assert throttle.get_ident(_request(forwarded_for="203.0.113.5")) == PROXY  # a forged header: no fresh count
    settings.TRUSTED_PROXY_COUNT = 1
    assert throttle.get_ident(_request(forwarded_for="203.0.113.5")) == "203.0.113.5"


# --- the lockout and the audit trail -----------------------------------------------------------------

@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def test_lockout_behind_a_trusted_proxy_counts_each_client_separately(client, rep, limit_3, one_proxy):
    statuses = [_login(client, "wrong", forwarded_for="203.0.113.5").status_code for _ in range(limit_3)]

    assert statuses == [200, 200, 429]
    assert _login(client, "pw-rep1-Secret1", forwarded_for="203.0.113.5").status_code == 429
    assert _login(client, "pw-rep1-Secret1", forwarded_for="203.0.113.6").status_code == 302  # same proxy


def test_lockout_without_trusted_proxy_ignores_a_forged_forwarded_for(client, rep, limit_3):
    statuses = [_login(client, "wrong", forwarded_for=f"203.0.113.{i}").status_code for i in range(limit_3)]

    assert statuses == [200, 200, 429]  # a fresh forged address per try still counts against REMOTE_ADDR
    assert _login(client, "pw-rep1-Secret1", forwarded_for="198.51.100.1").status_code == 429
    assert _login(client, "pw-rep1-Secret1", remote="10.0.0.10").status_code == 302  # another real address


def test_audit_records_remote_addr_without_trusted_proxy(client, manager):
    client.force_login(manager)

    b"".join(client.get(reverse("customer_export"), REMOTE_ADDR=PROXY,
                        HTTP_X_FORWARDED_FOR="203.0.113.5").streaming_content)

    assert AuditEvent.objects.get().ip == PROXY


def test_audit_records_the_client_behind_a_trusted_proxy(client, manager, one_proxy):
    client.force_login(manager)

    b"".join(client.get(reverse("customer_export"), REMOTE_ADDR=PROXY,
                        HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.5").streaming_content)

    assert AuditEvent.objects.get().ip == "203.0.113.5"


# --- the settings --------------------------------------------------------------------------------------

def _manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, **env})


def test_trusted_proxy_settings_come_from_the_environment():
    result = _manage("shell", "-c", "from django.conf import settings as s; print(s.TRUSTED_PROXY_COUNT, *s.TRUSTED_PROXIES)",
                     TRUSTED_PROXY_COUNT="2", TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.7")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:] == ["2", "10.0.0.0/8", "192.0.2.7/32"]


def test_trusted_proxies_bad_entry_fails_loudly_naming_the_variable():
    result = _manage("check", TRUSTED_PROXIES="10.0.0.0/8,proxy.internal")

    assert result.returncode != 0
    assert "TRUSTED_PROXIES: 'proxy.internal' is not an IP address or network" in result.stderr
