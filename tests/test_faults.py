"""Faults: the broker (Redis) going away and coming back, and the database connection dying mid-import.

Broker tests start their OWN redis-server on a free port (never the shared one) and point this
process and the worker processes at it, so they can stop it. They need the `redis-server`
binary: when it is missing they fail if REDIS_URL is set (CI, where Redis is part of the
stack) and are skipped otherwise (a developer's clone on the embedded SQLite / SQLite broker
set-up may not have Redis installed). With the binary present they run on both backends.
"""
import os
import shutil
import socket
import subprocess
import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection
from rest_framework.test import APIClient

from crm.imports import importer as crm_services
from crm.imports import storage
from crm.models import Customer, ImportRun, Interaction, Product
from ml import services as ml_services
from ml.models import TrainingRun
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("transactional_db")]


class OwnRedis:
    """A throw-away redis-server on a free port that a test may stop and start again."""

    def __init__(self, binary):
        self.binary = binary
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, timeout=10, interval=0.05, what="redis-server to accept connections")

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def _answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def own_redis(monkeypatch):
    """This process and workers started after it use a private redis-server as their broker."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("REDIS_URL"):
            pytest.fail("redis-server is not on PATH, but REDIS_URL is set: the broker fault tests need it")
        pytest.skip("redis-server is not installed; the broker fault tests start their own Redis")
    from crm.celery import app

    # Read before setting the variable: Celery's broker_url prefers CELERY_BROKER_URL from the environment.
    saved = (app.conf.broker_url, app.conf.broker_transport_options)
    redis = OwnRedis(binary)
    redis.start()
    monkeypatch.setenv("CELERY_BROKER_URL", redis.url)  # read by start_worker's worker processes
    _use_broker(app, redis.url, {"visibility_timeout": 3600})
    try:
        yield redis
    finally:
        _use_broker(app, *saved)
        if redis.proc is not None:
            redis.stop()


def _use_broker(app, url, transport_options):
    # Producer pools are built on first use from the configured URL: drop them to switch broker.
    # kombu also keeps producer pools per broker URL in a global registry: a closed one would be
    # handed back when the URL is switched back, so the registry is emptied too.
    from kombu import pools

    app.conf.broker_url = url
    app.conf.broker_transport_options = transport_options
    if app._pool is not None:
        app._pool.force_close_all()
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def manager_api(manager):
    client = APIClient()
    client.force_login(manager)
    return client


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"  # nothing is written there: uploads are stored in the database
    return settings.MEDIA_ROOT


CUSTOMERS = b"external_id,name\nR1,Redis One\nR2,Redis Two\n"


def test_broker_down_pages_and_api_keep_serving_reads(own_redis, client, manager, manager_api):
    Customer.objects.create(external_id="K1", name="Kept Reading")
    own_redis.stop()
    client.force_login(manager)

    pages = {url: client.get(url).status_code for url in ("/", "/customers/", "/models/", "/imports/")}
    api = manager_api.get("/api/v1/customers/")

    assert pages == {"/": 200, "/customers/": 200, "/models/": 200, "/imports/": 200}
    assert api.status_code == 200 and [c["external_id"] for c in api.json()["results"]] == ["K1"]


def test_api_retrain_broker_down_is_503_run_stays_queued_and_a_starting_worker_runs_it(
        own_redis, start_worker, manager_api):
    own_redis.stop()

    response = manager_api.post("/api/v1/training-runs/", {"kind": "forecast"}, format="json")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "background_unavailable" and "queued" in error["message"]
    run = TrainingRun.objects.get()
    assert (run.status, run.dispatched_at) == ("queued", None)
    # Broker back: a worker coming up sends what the broker missed (no data yet, so the run
    # ends refused; what matters is that a worker took it without anyone asking again).
    own_redis.start()
    start_worker()
    done = wait_for(lambda: TrainingRun.objects.filter(pk=run.pk).exclude(status="queued")
                    .exclude(status="running").first(), timeout=120, what="the worker to take the queued run")
    assert done.attempts == 1 and done.dispatched_at is not None
    assert "no interactions" in done.error


def test_web_import_broker_down_says_so_keeps_files_and_the_sweep_sends_it_later(
        own_redis, start_worker, client, manager, media):
    start_worker()  # already running when the broker goes away: it reconnects by itself
    own_redis.stop()
    client.force_login(manager)

    response = client.post("/imports/", {"customers": SimpleUploadedFile("customers.csv", CUSTOMERS)}, follow=True)

    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1 and "Background work is unavailable" in shown[0]
    run = ImportRun.objects.get()
    assert (run.status, run.dispatched_at) == ("queued", None)
    with storage.open_stored(run.stored_files.get()) as saved:
        assert saved.read() == CUSTOMERS
    assert ml_services.dispatch_pending() == {"runs": [], "imports": []}  # still down: nothing sent, nothing lost
    assert ImportRun.objects.get().dispatched_at is None

    own_redis.start()
    from ml.tasks import sweep_stale_runs_task

    sweep_stale_runs_task()  # what beat runs every minute

    finished = wait_for(lambda: ImportRun.objects.filter(pk=run.pk, status="succeeded").first(), timeout=120,
                        what="the reconnected worker to run the import")
    assert finished.dispatched_at is not None
    assert sorted(Customer.objects.values_list("external_id", flat=True)) == ["R1", "R2"]


def test_api_import_broker_down_is_503_and_a_second_retrain_request_retries_the_send(
        own_redis, manager_api, media):
    own_redis.stop()

    imported = manager_api.post("/api/v1/imports/", {"customers": SimpleUploadedFile("c.csv", CUSTOMERS)},
                                format="multipart")
    first = manager_api.post("/api/v1/training-runs/", {"kind": "segmentation"}, format="json")
    own_redis.start()
    second = manager_api.post("/api/v1/training-runs/", {"kind": "segmentation"}, format="json")

    assert imported.status_code == 503 and imported.json()["error"]["code"] == "background_unavailable"
    assert ImportRun.objects.get().status == "queued" and ImportRun.objects.get().files.count() == 1
    assert first.status_code == 503
    # The later request joins the queued run and, the broker being back, sends it.
    assert second.status_code == 202 and second.json()["created"] is False
    run = TrainingRun.objects.get()
    assert second.json()["run"]["id"] == run.pk and run.dispatched_at is not None


def test_web_retrain_broker_down_shows_a_message_and_keeps_the_run_queued(own_redis, client, manager):
    own_redis.stop()
    client.force_login(manager)

    response = client.post("/models/retrain/", {"kind": "forecast"}, follow=True)

    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1 and "Background work is unavailable" in shown[0]
    assert list(TrainingRun.objects.values_list("kind", "status")) == [("forecast", "queued")]


# --- the database connection dies mid-import ------------------------------------------------------

BATCH = 4


def _import_files(write_csv):
    customers = write_csv("customers.csv", ["external_id", "name", "email", "signup_date"],
                          [[f"C{i:02d}", f"Customer {i}", f"c{i}@example.com", "2024-01-15"] for i in range(10)])
    products = write_csv("products.csv", ["sku", "name", "price"], [["P1", "Pen", "1.50"], ["P2", "Pad", "3.00"]])
    interactions = write_csv(
        "interactions.csv", ["external_id", "customer_external_id", "type", "occurred_at", "product_sku", "amount"],
        [[f"I{i:02d}", f"C{i % 10:02d}", "purchase", f"2025-01-{1 + i % 28:02d}", f"P{1 + i % 2}", f"{i}.00"]
         for i in range(22)])
    return {"customers": customers, "products": products, "interactions": interactions}


def _tables():
    """Every stored row by its natural key (ids and timestamps differ between runs by design)."""
    return {
        "customers": sorted(Customer.objects.values_list("external_id", "name", "email", "signup_date",
                                                         "last_purchase_at")),
        "products": sorted(Product.objects.values_list("sku", "name", "price", "active")),
        "interactions": sorted(Interaction.objects.values_list("external_id", "customer__external_id", "type",
                                                               "occurred_at", "product__sku", "amount")),
    }


class _KillInsideBatch:
    """Progress hook: once ``after`` interactions are stored, hold a lock the next batch's merge
    needs and, while that batch's transaction waits for it, terminate the import's backend."""

    def __init__(self, after):
        self.after = after
        self.killed = False
        self.thread = None

    def __call__(self, run, result):
        if result.kind != "interactions" or result.rows_read != self.after or self.thread is not None:
            return
        import psycopg

        victim = connection.connection.info.backend_pid
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        holder = psycopg.connect(**params)
        holder.execute(f"LOCK TABLE {Interaction._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")

        def kill():
            try:
                with psycopg.connect(**params, autocommit=True) as admin:
                    wait_for(lambda: admin.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                        [victim]).fetchone(), timeout=30, interval=0.05, what="the next batch to wait for the lock")
                    self.killed = admin.execute("SELECT pg_terminate_backend(%s)", [victim]).fetchone()[0]
            finally:
                holder.rollback()
                holder.close()

        self.thread = threading.Thread(target=kill)
        self.thread.start()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="not applicable on SQLite: there is no server "
                    "connection to terminate (pg_terminate_backend); runs on PostgreSQL")
def test_import_connection_killed_inside_a_batch_keeps_whole_batches_and_rerun_matches_a_clean_import(
        transactional_db, write_csv, tmp_path, settings):
    settings.IMPORT_BULK_LOAD = False  # batch by batch, as into tables that hold rows (the first load: below)
    files = _import_files(write_csv)
    killer = _KillInsideBatch(after=2 * BATCH)

    with pytest.raises(OperationalError) as raised:
        crm_services.import_files(files, batch_size=BATCH, progress=killer, rejected_dir=tmp_path)
    killer.thread.join(timeout=30)
    connection.close()  # the test's connection was the one terminated

    assert killer.killed, f"the import ended before its connection was killed: {raised.value!r}"
    # Two whole interaction batches, nothing of the third (it was inside its transaction).
    assert Interaction.objects.count() == 2 * BATCH
    assert Customer.objects.count() == 10 and Product.objects.count() == 2
    run = ImportRun.objects.get()
    assert run.status == "failed"
    assert "stopped part-way" in run.error and "terminating connection" in run.error

    rerun = crm_services.import_files(files, batch_size=BATCH, rejected_dir=tmp_path)
    interrupted_then_rerun = _tables()
    assert rerun.status == "succeeded"

    for model in (Interaction, Customer, Product):
        model.objects.all().delete()
    clean = crm_services.import_files(files, batch_size=BATCH, rejected_dir=tmp_path)

    assert clean.status == "succeeded"
    assert interrupted_then_rerun == _tables()
    assert len(interrupted_then_rerun["interactions"]) == 22


def test_retrain_command_broker_down_fails_clearly_and_keeps_the_run_queued(own_redis):
    from django.core.management import CommandError, call_command

    own_redis.stop()

    with pytest.raises(CommandError, match="Background work is unavailable"):
        call_command("retrain", kind="forecast")
    assert list(TrainingRun.objects.values_list("kind", "status", "dispatched_at")) == [("forecast", "queued", None)]


def _catalogue(table):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s ORDER BY 1", [table])
        indexes = cursor.fetchall()
        cursor.execute("SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
                       "WHERE conrelid = %s::regclass ORDER BY 1", [table])
        return indexes, cursor.fetchall()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="not applicable on SQLite: there is no server "
                    "connection to terminate (pg_terminate_backend); runs on PostgreSQL")
def test_first_load_whose_connection_is_killed_leaves_the_table_as_before_and_rerun_completes(
        transactional_db, write_csv, tmp_path):
    files = _import_files(write_csv)
    before = _catalogue(Interaction._meta.db_table)
    state = {"killed": False}

    def kill_after_two_batches(run, result):
        # Inside the first load's one transaction: its DROP INDEX and two batches are uncommitted.
        if result.kind == "interactions" and result.rows_read == 2 * BATCH and not state["killed"]:
            import psycopg

            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            with psycopg.connect(**params, autocommit=True) as admin:
                state["killed"] = admin.execute("SELECT pg_terminate_backend(%s)",
                                                [connection.connection.info.backend_pid]).fetchone()[0]

    with pytest.raises(OperationalError):
        crm_services.import_files(files, batch_size=BATCH, progress=kill_after_two_batches, rejected_dir=tmp_path)
    connection.close()  # the test's connection was the one terminated

    assert state["killed"]
    assert Interaction.objects.count() == 0  # nothing of the first load, not even its whole batches
    assert _catalogue(Interaction._meta.db_table) == before  # every index and foreign key back as it was
    assert Customer.objects.count() == 10  # the customers' own first load had committed before

    rerun = crm_services.import_files(files, batch_size=BATCH, rejected_dir=tmp_path)

    assert rerun.status == "succeeded"
    assert Interaction.objects.count() == 22
    assert _catalogue(Interaction._meta.db_table) == before
