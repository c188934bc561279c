"""Stress of the embedded broker: does a message ever arrive torn, twice, or not at all?

    python bench/broker_stress.py [--publishers 4] [--messages 1000] [--payload-kb 16]
        [--publisher-kills 20] [--consumer-kills 5] [--transport sqlite filesystem] [--write]

For each transport (``sqlite``: crm.broker's SQLite file, the embedded default; ``filesystem``:
kombu's filesystem transport it replaced), in a scratch folder ``var/broker-stress/<transport>``:
``--publishers`` processes each publish ``--messages`` messages of ``--payload-kb`` KB (an id and
a padding whose sha256 travels with it) while one consumer process takes them one at a time,
checks each and acknowledges it. Meanwhile publishers are SIGKILLed at random moments
(``--publisher-kills``, each restarted with the ids it had not yet sent) and so is the consumer
(``--consumer-kills``, restarted). A publisher records an id once ``publish`` has returned; the
one it was sending when killed is "in flight": it may arrive or not, but never torn.

Counted: messages confirmed by their publisher; received whole (id known, checksum right);
**undecodable** (the transport handed over bytes that are not a whole message: torn JSON, a
checksum mismatch); **lost** (confirmed, never received); **duplicated** (received more than
once); in-flight messages that arrived; rows or files left; the consumer's rate.
``--write`` replaces the ``<!-- broker-stress:start -->`` section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MARK_START, MARK_END = "<!-- broker-stress:start -->", "<!-- broker-stress:end -->"
QUEUE = "stress"


def connection(transport: str, folder: Path):
    from kombu import Connection

    from crm import broker

    if transport == "sqlite":
        return Connection(broker.url(folder), transport_options=broker.transport_options())
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return Connection("filesystem://", transport_options={
        "data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"), "store_processed": False,
        "control_folder": str(folder / "control")})


def publish(transport: str, folder: Path, ids: list[str], payload_kb: int, confirmed: Path) -> None:
    """Child process: publish ``ids`` in order, appending each to ``confirmed`` once sent."""
    from kombu import Queue

    queue = Queue(QUEUE, routing_key=QUEUE)
    rng = random.Random(ids[0] if ids else 0)
    with connection(transport, folder) as conn, open(confirmed, "a", buffering=1) as out:
        producer = conn.Producer()
        for message_id in ids:
            pad = rng.randbytes(payload_kb * 512).hex()  # payload_kb KB of hex
            producer.publish({"id": message_id, "pad": pad, "sha": hashlib.sha256(pad.encode()).hexdigest()},
                             routing_key=QUEUE, declare=[queue], serializer="json")
            out.write(message_id + "\n")


def consume(transport: str, folder: Path, received: Path, stop_file: Path) -> None:
    """Child process: take messages one at a time, record each as OK/BAD, acknowledge it."""
    from kombu import Queue

    with connection(transport, folder) as conn, open(received, "a", buffering=1) as out:
        channel = conn.channel()
        Queue(QUEUE, routing_key=QUEUE)(channel).declare()
        idle_since = None
        while True:
            try:
                message = channel.basic_get(QUEUE)
            except Exception as exc:  # a torn message: the transport could not decode what it read
                out.write(f"BAD {type(exc).__name__}\n")
                continue
            if message is None:
                idle_since = idle_since or time.monotonic()
                if stop_file.exists() and time.monotonic() - idle_since > 3:
                    return
                time.sleep(0.02)
                continue
            idle_since = None
            body = message.decode()
            whole = hashlib.sha256(body["pad"].encode()).hexdigest() == body["sha"]
            out.write(f"{'OK' if whole else 'BAD checksum'} {body['id']}\n")
            message.ack()


def _child(*args: str) -> subprocess.Popen:
    # stderr to a log beside the broker: a child that fails on its own is counted, and shown there.
    with open(Path(args[2]) / f"{args[0][2:]}-{time.monotonic_ns()}.log", "w") as err:
        return subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT, stderr=err)


def _lines(path: Path) -> list[str]:
    # A process SIGKILLed mid-write can leave half a line: only whole lines count.
    text = path.read_text() if path.exists() else ""
    return text.split("\n")[:-1]


def stress(transport: str, args) -> dict:
    folder = ROOT / "var" / "broker-stress" / transport
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    received, stop_file = folder / "received.txt", folder / "stop"
    plan = {p: [f"{p}-{i}" for i in range(args.messages)] for p in range(args.publishers)}
    confirmed = {p: folder / f"confirmed-{p}-0.txt" for p in plan}
    publishers = {p: _child("--publish", transport, str(folder), str(confirmed[p]), str(args.payload_kb), *ids)
                  for p, ids in plan.items()}
    consumer = _child("--consume", transport, str(folder), str(received), str(stop_file))
    given = dict(plan)  # the ids each publisher process was started with
    sent_so_far = {p: [] for p in plan}  # confirmed by the publishers of p killed so far
    in_flight: set[str] = set()
    rng = random.Random(0)
    started = time.monotonic()
    kills = Counter()

    def sent(p: int) -> list[str]:
        return sent_so_far[p] + _lines(confirmed[p])

    def kill_a_publisher() -> None:
        for _ in range(200):  # a live publisher that has sent something since its (re)start
            live = [p for p, proc in publishers.items() if proc.poll() is None and _lines(confirmed[p])]
            if live:
                break
            time.sleep(0.05)
        else:
            return
        p = rng.choice(live)
        publishers[p].send_signal(signal.SIGKILL)
        publishers[p].wait()
        done = _lines(confirmed[p])
        sent_so_far[p] += done
        rest = given[p][len(done):]
        confirmed[p] = folder / f"confirmed-{p}-{kills['publisher'] + 1}.txt"
        if rest:  # the first id not confirmed was being sent: in flight; the restart skips it
            in_flight.add(rest[0])
            given[p] = rest[1:]
            if given[p]:
                publishers[p] = _child("--publish", transport, str(folder), str(confirmed[p]),
                                       str(args.payload_kb), *given[p])
        kills["publisher"] += 1

    events = ["publisher"] * args.publisher_kills + ["consumer"] * args.consumer_kills
    rng.shuffle(events)
    for event in events:
        time.sleep(rng.uniform(0.3, 1.2))
        if event == "publisher":
            kill_a_publisher()
        else:
            consumer.send_signal(signal.SIGKILL)
            consumer.wait()
            consumer = _child("--consume", transport, str(folder), str(received), str(stop_file))
            kills["consumer"] += 1
    for proc in publishers.values():
        proc.wait(timeout=600)
    # A publisher that exited with an error on its own (not one this script killed).
    failed = [p for p, proc in publishers.items() if proc.returncode not in (0, -signal.SIGKILL)]
    stop_file.touch()
    try:
        consumer.wait(timeout=600)
    except subprocess.TimeoutExpired:
        consumer.kill()
    seconds = time.monotonic() - started

    confirmed_ids = {i for p in plan for i in sent(p)}
    lines = _lines(received)
    ok = Counter(line.split(" ", 1)[1] for line in lines if line.startswith("OK "))
    bad = Counter(line.split(" ", 1)[1] for line in lines if line.startswith("BAD"))
    if transport == "sqlite":
        import sqlite3

        with sqlite3.connect(folder / "broker.sqlite3") as db:
            left = db.execute("select count(*) from kombu_message").fetchone()[0]
        size = sum(f.stat().st_size for f in folder.glob("broker.sqlite3*"))
    else:
        left = len(list((folder / "queue").glob("*.msg")))
        size = sum(f.stat().st_size for f in (folder / "queue").glob("*.msg"))
    return {"transport": transport, "confirmed": len(confirmed_ids), "received": sum(ok.values()),
            "undecodable": sum(bad.values()), "bad_kinds": dict(bad),
            "lost": len(confirmed_ids - set(ok)), "duplicated": sum(n - 1 for n in ok.values() if n > 1),
            "in_flight": len(in_flight), "in_flight_arrived": len(in_flight & set(ok)),
            "kills": dict(kills), "failed": len(failed), "consumer_exit": consumer.returncode, "left": left,
            "size_mb": size / 1e6, "seconds": seconds}


def report(results: list[dict], args) -> str:
    head = (f"`python bench/broker_stress.py --publishers {args.publishers} --messages {args.messages} "
            f"--payload-kb {args.payload_kb} --publisher-kills {args.publisher_kills} --consumer-kills "
            f"{args.consumer_kills}` on {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} CPUs (method: the docstring "
            f"of bench/broker_stress.py).\n\n"
            "| transport | confirmed | received whole | undecodable | lost | duplicated | in flight (arrived) "
            "| kills (publisher, consumer) | failed on their own | left | s |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = [f"| {r['transport']} | {r['confirmed']:,} | {r['received']:,} | **{r['undecodable']}**"
            f"{' ' + str(r['bad_kinds']) if r['bad_kinds'] else ''} | **{r['lost']}** | **{r['duplicated']}** "
            f"| {r['in_flight']} ({r['in_flight_arrived']}) | {r['kills'].get('publisher', 0)}, "
            f"{r['kills'].get('consumer', 0)} | {r['failed'] + (r['consumer_exit'] != 0)} | {r['left']} | {r['seconds']:.0f} |" for r in results]
    return head + "\n".join(rows)


def write_benchmarks(text: str) -> None:
    # Here, not at the top: the publisher and consumer processes this script starts need no pandas.
    from bench.completejourney import replace_section

    replace_section(MARK_START, MARK_END, f"{MARK_START}\n## Embedded broker under stress\n\n{text}\n{MARK_END}")


def main() -> int:
    if sys.argv[1:2] == ["--publish"]:
        transport, folder, confirmed, payload_kb, *ids = sys.argv[2:]
        publish(transport, Path(folder), ids, int(payload_kb), Path(confirmed))
        return 0
    if sys.argv[1:2] == ["--consume"]:
        transport, folder, received, stop_file = sys.argv[2:]
        consume(transport, Path(folder), Path(received), Path(stop_file))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--messages", type=int, default=1000, help="per publisher")
    parser.add_argument("--payload-kb", type=int, default=16)
    parser.add_argument("--publisher-kills", type=int, default=20)
    parser.add_argument("--consumer-kills", type=int, default=5)
    parser.add_argument("--transport", nargs="+", choices=["sqlite", "filesystem"], default=["sqlite", "filesystem"])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    results = [stress(transport, args) for transport in args.transport]
    text = report(results, args)
    print(text)
    if args.write:
        write_benchmarks(text)
    sqlite = [r for r in results if r["transport"] == "sqlite"]
    # The embedded broker's promise: nothing torn, nothing twice, nothing a publisher confirmed lost
    # except the messages a killed consumer had taken and not acknowledged (at most one per kill).
    return 0 if all(r["undecodable"] == 0 and r["duplicated"] == 0 and r["failed"] == 0 and r["consumer_exit"] == 0
                    and r["lost"] <= r["kills"].get("consumer", 0) for r in sqlite) else 1


if __name__ == "__main__":
    raise SystemExit(main())
