"""The embedded SQLite broker (crm.broker) with real processes: first use by many at once, and
a publisher SIGKILLed mid-stream leaving nothing torn."""
import signal
import sqlite3
import subprocess  # nosec B404
import sys
import time
from pathlib import Path

from kombu import Connection, Queue

from crm import broker
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[1]

PUBLISHER = """
import sys, time
from pathlib import Path
from kombu import Connection, Queue
import crm.broker as b
folder, go, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
while not go.exists():
    time.sleep(0.005)
q = Queue('t', routing_key='t')
with Connection(b.url(folder), transport_options=b.transport_options()) as c:
    p = c.Producer()
    for i in range(n):
        p.publish({'who': sys.argv[4], 'i': i, 'pad': 'x' * 20000}, routing_key='t', declare=[q], serializer='json')
        print(i, flush=True)
"""


def _publishers(folder, go, count, messages, **popen):
    return [subprocess.Popen([sys.executable, "-c", PUBLISHER, str(folder), str(go), str(messages), str(k)],
                             cwd=ROOT, **popen)  # noqa: S603 # nosec B603
            for k in range(count)]


def _drain(folder):
    taken = []
    with Connection(broker.url(folder), transport_options=broker.transport_options()) as conn:
        channel = conn.channel()
        Queue("t", routing_key="t")(channel).declare()
        while (message := channel.basic_get("t")) is not None:
            taken.append(message.decode())
            message.ack()
    return taken


def test_broker_first_use_by_many_processes_at_once_creates_its_tables_without_failing_any(tmp_path):
    """kombu creates its tables in whichever process comes first: on a fresh file, processes that
    start together (run_all's worker and beat after a clone) race to create them."""
    for round_ in range(3):
        folder, go = tmp_path / f"r{round_}", tmp_path / f"go{round_}"
        folder.mkdir()
        procs = _publishers(folder, go, 8, 1, stderr=subprocess.PIPE, text=True)
        time.sleep(2)  # every process imported and waiting on the same instant
        go.touch()
        errors = [proc.communicate(timeout=60)[1] for proc in procs if proc.wait(timeout=60) != 0]
        assert errors == []
        assert len(_drain(folder)) == 8


def test_broker_publisher_killed_mid_stream_leaves_whole_messages_only(tmp_path):
    go = tmp_path / "go"
    go.touch()
    procs = _publishers(tmp_path, go, 3, 100000, stdout=subprocess.PIPE, text=True)
    confirmed = {}
    for proc in procs:
        wait_for(lambda proc=proc: proc.stdout.readline(), timeout=30, what="a publisher to send")
    time.sleep(0.5)
    for k, proc in enumerate(procs):
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        lines = proc.stdout.read().split("\n")[:-1]  # a line cut by the kill does not count
        confirmed[str(k)] = int(lines[-1]) + 1 if lines else 1
    taken = _drain(tmp_path)
    assert all(m["pad"] == "x" * 20000 for m in taken)  # a torn message would not even decode
    for k, n in confirmed.items():
        got = sorted(m["i"] for m in taken if m["who"] == k)
        # Everything its publisher confirmed, once, in order; at most the one in flight besides.
        assert got[:n] == list(range(n)) and len(got) in (n, n + 1), (k, n, got[-3:])
    with sqlite3.connect(tmp_path / "broker.sqlite3") as db:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert db.execute("select count(*) from kombu_message").fetchone()[0] == 0
