"""Shared fixtures: users per role, CSV writers, and a real Celery worker process."""
import csv
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from crm.models import ROLE_ADMIN, ROLE_MANAGER, ROLE_SALES_REP
from ml.models import TrainingRun

ROOT = Path(__file__).resolve().parent.parent


_PASSWORD_HASHES = {}


def password_hash(raw):
    """The stored form of a password, made once per password and hasher setting in a session.

    A real hash from the configured hasher (PBKDF2 with Django's iterations, ~0.5 s here), so
    logging in checks it exactly as in production; only its salt is shared between tests.
    """
    from django.conf import settings
    from django.contrib.auth.hashers import make_password

    key = (raw, tuple(settings.PASSWORD_HASHERS))
    if key not in _PASSWORD_HASHES:
        _PASSWORD_HASHES[key] = make_password(raw)
    return _PASSWORD_HASHES[key]


@receiver(user_logged_in, dispatch_uid="tests-force-login-second-factor")
def _force_login_passes_the_second_factor(sender, request, user, **kwargs):
    """What django-otp's own receiver does for a user carrying ``otp_device`` (see make_user): the
    request Client.force_login makes has no ``.user``, so that receiver skips it."""
    device = getattr(user, "otp_device", None)
    if device is not None and device.user_id == user.pk:
        request.session[DEVICE_ID_SESSION_KEY] = device.persistent_id


def api_key(user, **options) -> str:
    """The key of a new API token of ``user`` (crm.tokens.create_token's options: scope, own_customers_only, ...)."""
    from crm import tokens

    return tokens.create_token(user, **options)[1]


@pytest.fixture
def make_user(db, django_user_model):
    """make_user(username, role=None, authenticator=None, **fields): a user whose password is
    "pw-<username>-Secret1".

    Admins and managers must have a second factor (crm.second_factor), so by default they get a
    confirmed TOTP device, as ``user.otp_device``: ``client.force_login(user)`` then marks the
    session verified with it, as django-otp's own login forms do, and tests reach pages as a
    signed-in manager really does. ``authenticator=False`` makes a user without one (what the
    enforcement tests need), ``True`` gives one to any user; codes come from
    ``django_otp.oath.totp(user.otp_device.bin_key)``. A password login (the login page) is never
    verified by it.
    """
    def make(username, role=None, authenticator=None, **extra):
        # What create_user(username, password=...) stores, without hashing the same password again.
        user = django_user_model(username=django_user_model.normalize_username(username), **extra)
        user.password = password_hash("pw-" + username + "-Secret1")
        user.save()
        if role:
            # get_or_create: transactional tests flush the groups the data migration made
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        if authenticator is None:
            authenticator = role in (ROLE_MANAGER, ROLE_ADMIN) or user.is_superuser
        if authenticator:
            user.otp_device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
        return user
    return make


@pytest.fixture
def rep(make_user):
    return make_user("rep1", ROLE_SALES_REP)


@pytest.fixture
def other_rep(make_user):
    return make_user("rep2", ROLE_SALES_REP)


@pytest.fixture
def manager(make_user):
    return make_user("boss", ROLE_MANAGER)  # not staff: only admins have the Django admin


@pytest.fixture
def admin_user(make_user):
    return make_user("root", ROLE_ADMIN, is_staff=True, is_superuser=True)


@pytest.fixture
def fanned_out_run(django_capture_on_commit_callbacks):
    def make(kind: str = "forecast") -> TrainingRun:
        """A run of ``kind`` fitted by its worker with its scoring left to chunks (none scored yet)."""
        from ml import services  # noqa: PLC0415 -- the app registry is ready only once the tests run

        run, _ = services.request_retrain(kind, as_of=date(2025, 6, 30), enqueue=False)
        with django_capture_on_commit_callbacks(execute=True):  # the chunks' tasks are sent on commit
            services.execute_run(run.pk, fan_out=True)
        run.refresh_from_db()
        return run
    return make


@pytest.fixture
def write_csv(tmp_path):
    """write_csv(name, header, rows) -> Path; rows are lists of cells (or raw bytes lines)."""
    def write(name, header, rows):
        path = tmp_path / name
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for row in rows:
                writer.writerow(row)
        return path
    return write


def read_rejects(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def start_worker(transactional_db, settings):
    """Start real `celery worker` processes on the configured broker and the test database.

    The queue name is unique per test, so tasks left on a shared broker by earlier runs are
    never picked up, and this test's tasks reach only its workers. Each worker runs in its own
    process group so a test can SIGKILL it with its pool children.
    """
    from django.db import connection

    from crm.celery import app

    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = os.environ.copy()
    env["CELERY_QUEUE"] = queue
    env["ML_STALE_AFTER_SECONDS"] = str(settings.ML_STALE_AFTER_SECONDS)
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        env["DATABASE_URL"] = (f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
                               f"{db['PORT'] or 5432}/{db['NAME']}")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    procs, logs = [], []
    log_dir = Path(os.environ.get("CRM_VAR_DIR", ROOT / "var"))
    log_dir.mkdir(parents=True, exist_ok=True)

    def start():
        log = open(log_dir / f"worker-{queue}-{len(procs)}.log", "w")
        logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "crm", "worker", "--pool", "prefork", "--concurrency", "1",
             "--loglevel", "INFO", "-Q", queue, "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        app.conf.task_default_queue = previous
        # The test is over: kill each worker with its pool children at once. A warm shutdown
        # (SIGTERM) takes 3-6 s per worker here, mostly waiting out the consumer's 2 s poll;
        # the queue is this test's own, so a message left unacknowledged reaches nobody, and
        # the tests about a worker dying send their signals themselves.
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in procs:
            proc.wait(timeout=20)
        for log in logs:
            log.close()


@pytest.fixture
def celery_worker_process(start_worker):
    return start_worker()


def wait_for(predicate, timeout=60.0, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(autouse=True)
def _no_control_group(settings):
    """No customer is held out as control unless a test sets ML_CONTROL_SHARE to test exactly that: the
    group is drawn with a fresh random salt per database, so planted customers would otherwise lose
    their suggestions at random (10 % each by default)."""
    settings.ML_CONTROL_SHARE = 0


@pytest.fixture(autouse=True)
def _no_retrain_after_import(settings):
    """Imports in tests do not queue retrains unless a test turns it on to test exactly that."""
    settings.RETRAIN_AFTER_IMPORT = False
