"""The embedded stack (no Redis): the SQLite broker, and run_all supervising its processes.

These start real processes on a scratch SQLite database and broker file, whatever the suite's
own database is, because they test what `make run` starts.
"""
import os
import re
import signal
import socket
import subprocess  # nosec B404
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from crm import broker

ROOT = Path(__file__).resolve().parents[1]


def _embedded_env(var_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_QUEUE"}}
    env.update(CRM_VAR_DIR=str(var_dir), DATABASE_URL=f"sqlite:///{var_dir / 'db.sqlite3'}",
               DJANGO_SETTINGS_MODULE="crm.settings", PYTHONUNBUFFERED="1")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _migrate(env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True,
                   timeout=180)  # noqa: S603 # nosec B603


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 # nosec B310 (our test server)
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_settings_choose_the_sqlite_broker_without_redis_and_redis_with_it(tmp_path):
    code = "from django.conf import settings; print(settings.CELERY_BROKER_URL); print(settings.CELERY_BROKER_TRANSPORT_OPTIONS)"
    env = _embedded_env(tmp_path)
    out = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()  # noqa: S603 # nosec B603
    assert out[0] == broker.url(tmp_path) == f"crmsqla+sqlite:///{tmp_path / 'broker.sqlite3'}"
    assert "polling_interval" in out[1]
    env["REDIS_URL"] = "redis://127.0.0.1:6379/15"
    out = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()  # noqa: S603 # nosec B603
    assert out[0] == "redis://127.0.0.1:6379/15"
    assert "visibility_timeout" in out[1]


def test_sqlite_broker_delivers_each_message_once_and_keeps_no_delivered_rows(tmp_path):
    """Two publishing processes, one consumer: every message arrives whole and exactly once."""
    from kombu import Connection, Queue

    url = broker.url(tmp_path)
    publisher = (
        "import sys; from kombu import Connection, Queue; import crm.broker as b\n"
        f"q = Queue('t', routing_key='t')\n"
        f"with Connection({url!r}, transport_options=b.transport_options()) as c:\n"
        "    p = c.Producer()\n"
        "    for i in range(200):\n"
        "        p.publish({'n': int(sys.argv[1]) * 1000 + i, 'pad': 'x' * 2000}, routing_key='t', declare=[q],"
        " serializer='json')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", publisher, str(k)], cwd=ROOT)  # noqa: S603 # nosec B603
             for k in (1, 2)]
    seen = []
    with Connection(url, transport_options=broker.transport_options()) as conn:
        queue = Queue("t", routing_key="t")
        with conn.SimpleQueue(queue) as simple:
            deadline = time.monotonic() + 60
            while len(seen) < 400 and time.monotonic() < deadline:
                try:
                    message = simple.get(timeout=1)
                except simple.Empty:
                    continue
                seen.append(message.payload["n"])
                assert message.payload["pad"] == "x" * 2000
                message.ack()
    for proc in procs:
        assert proc.wait(timeout=30) == 0
    assert sorted(seen) == sorted([1000 + i for i in range(200)] + [2000 + i for i in range(200)])
    import sqlite3
    with sqlite3.connect(tmp_path / "broker.sqlite3") as db:
        assert db.execute("select count(*) from kombu_message").fetchone()[0] == 0
        assert db.execute("pragma journal_mode").fetchone()[0] == "wal"


@pytest.mark.integration
def test_run_all_restarts_a_killed_worker_while_the_site_keeps_answering(tmp_path):
    env = _embedded_env(tmp_path)
    _migrate(env)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "manage.py", "run_all", "--addr", f"127.0.0.1:{port}",  # noqa: S603
                             "--concurrency", "1"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # nosec B603
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    login = f"http://127.0.0.1:{port}/login/"

    def wait(predicate, what, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; run_all said:\n" + "".join(lines[-40:]))

    def worker_pid(word):
        for line in lines:
            match = re.search(rf"run_all: worker {word} \(pid (\d+)", line)
            if match:
                return int(match.group(1))
        return None

    try:
        wait(lambda: _answers(login), "the site to answer")
        first = wait(lambda: worker_pid("started"), "the worker to start")
        wait(lambda: any("celery@" in line and "ready" in line for line in lines), "the worker to be ready")
        pool = [child.pid for child in psutil.Process(first).children()]
        assert pool, "the worker's pool processes"
        os.kill(first, signal.SIGKILL)
        answers, failures = 0, 0
        deadline = time.monotonic() + 45
        second = None
        while time.monotonic() < deadline and second is None:
            if _answers(login):
                answers += 1
            else:
                failures += 1
            second = worker_pid("restarted")
            time.sleep(0.2)
        assert second is not None and second != first, "".join(lines[-40:])
        assert any("worker stopped (killed by SIGKILL)" in line for line in lines)
        assert answers > 0 and failures == 0
        # The dead worker's pool processes went with its process group: no orphan holds a task.
        assert not [pid for pid in pool if psutil.pid_exists(pid)
                    and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert proc.poll() is None, "run_all itself must keep running"
        # The new worker takes tasks: it logs ready again.
        wait(lambda: sum("celery@" in line and "ready" in line for line in lines) >= 2, "the new worker")
        assert _answers(login)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0
