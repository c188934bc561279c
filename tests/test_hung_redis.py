"""A Redis that accepts connections and then never answers (a hung server, not a stopped one):
requests that need the broker answer 503 within a bound instead of hanging, nothing is lost,
and reads whose throttle counts live in the hung cache still serve."""
import socket
import threading
import time

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from crm.models import Customer
from ml.models import TrainingRun
from tests.test_faults import _use_broker

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("transactional_db")]


class HungServer:
    """Accepts TCP connections, reads whatever comes, never writes a byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"
        self.accepted = []
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    @staticmethod
    def _swallow(conn):
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def close(self):
        self.closed.set()
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def hung_redis(settings):
    from crm.celery import app

    saved = (app.conf.broker_url, app.conf.broker_transport_options)
    server = HungServer()
    # The options a Redis broker gets from the settings (the embedded broker has its own).
    _use_broker(app, server.url, dict(settings.REDIS_BROKER_TRANSPORT_OPTIONS))
    try:
        yield server
    finally:
        _use_broker(app, *saved)
        server.close()


@pytest.fixture
def manager_api(manager):
    client = APIClient()
    client.force_login(manager)
    return client


def test_hung_broker_retrain_is_503_within_seconds_and_the_run_stays_queued(hung_redis, manager_api):
    started = time.monotonic()
    response = manager_api.post("/api/v1/training-runs/", {"kind": "forecast"}, format="json")
    elapsed = time.monotonic() - started

    assert hung_redis.accepted, "the request never reached the hung server"
    assert response.status_code == 503 and response.json()["error"]["code"] == "background_unavailable"
    print(f"retrain against a hung broker answered in {elapsed:.1f} s")
    assert elapsed < 8, f"the request hung for {elapsed:.1f} s"
    run = TrainingRun.objects.get()
    assert (run.status, run.dispatched_at) == ("queued", None)


def test_hung_cache_api_reads_still_serve_quickly(manager_api):
    customer = Customer.objects.create(external_id="H1", name="Hung Cache")
    server = HungServer()
    try:
        caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url,
                              "KEY_PREFIX": "crm-test",
                              "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25}}}
        with override_settings(CACHES=caches):
            started = time.monotonic()
            detail = manager_api.get(f"/api/v1/customers/{customer.pk}/")
            listed = manager_api.get("/api/v1/customers/")
            elapsed = time.monotonic() - started
    finally:
        server.close()

    assert server.accepted, "the throttle never reached the hung cache"
    assert (detail.status_code, listed.status_code) == (200, 200)
    assert detail.json()["external_id"] == "H1"
    assert elapsed < 5, f"two reads took {elapsed:.1f} s"
