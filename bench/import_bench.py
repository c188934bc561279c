"""Benchmark the CSV import: rows/s and peak RSS of ``manage.py import_data`` on SQLite and PostgreSQL.

    python bench/import_bench.py [--backend sqlite|postgres|both] [--rows 1000000] [--keep]

For each backend: a fresh scratch database (``/tmp/crm_bench_import.sqlite3``, or the
PostgreSQL database ``crm_bench_import``, dropped and recreated), migrated; then the same
import run twice as a subprocess, the first run creating every row and the second finding
them all unchanged (the idempotent path). The input files (``--customers`` customers,
``--products`` products, ``--rows`` interactions, made by ``bench/make_import_files.py``) are
generated once into ``--files`` (default a folder under /tmp, never the repository).

Reported per run: wall time of the process, seconds and rows/s of each file (from the
run's ImportFile records), overall rows/s (all rows / wall time, start-up included) and
the peak RSS and CPU time (user + system) of the import process (``os.wait4``'s rusage of
that one child; the database server's own CPU is not in it). On a shared machine the CPU
time moves less with other jobs than the wall time does; the load average is printed.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PG_NAME = "crm_bench_import"
SQLITE_PATH = Path(tempfile.gettempdir()) / "crm_bench_import.sqlite3"
KINDS = ("customers", "products", "interactions")


def make_files(folder: Path, rows: int, customers: int, products: int) -> dict:
    files = {kind: folder / f"{kind}.csv" for kind in KINDS}
    stamp = folder / f".made-{rows}-{customers}-{products}"
    if not stamp.exists():
        print(f"generating {rows:,} interactions, {customers:,} customers, {products:,} products in {folder}")
        subprocess.run([sys.executable, str(ROOT / "bench" / "make_import_files.py"), str(folder),
                        "--interactions", str(rows), "--customers", str(customers), "--products", str(products)],
                       check=True)
        stamp.touch()
    return files


def fresh_database(backend: str) -> str:
    """Drop and recreate the scratch database; return its DATABASE_URL."""
    if backend == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{SQLITE_PATH}"
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_NAME}")
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{PG_NAME}"


def _env(url: str) -> dict:
    env = os.environ.copy()
    env["DATABASE_URL"] = url
    env.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    return env


def run_import(url: str, files: dict) -> dict:
    """Run ``manage.py import_data`` once; return wall seconds, peak RSS (MB) and the output."""
    cmd = [sys.executable, str(ROOT / "manage.py"), "import_data", "-v", "0"]
    for kind, path in files.items():
        cmd += [f"--{kind}", str(path)]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    out = proc.stdout.read()
    # wait4 gives the rusage of this child alone (RUSAGE_CHILDREN would fold in earlier runs).
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"import failed ({proc.returncode}):\n{out}")
    return {"wall": wall, "rss_mb": usage.ru_maxrss / 1024, "cpu": usage.ru_utime + usage.ru_stime,
            "output": out, "load": os.getloadavg()[0]}


def file_results(url: str) -> list[tuple]:
    """(kind, rows_read, created, updated, unchanged, rejected, seconds) of the latest run."""
    sql = ("SELECT kind, rows_read, created, updated, unchanged, rejected, seconds FROM crm_importfile "
           "WHERE run_id = (SELECT MAX(id) FROM crm_importrun) ORDER BY id")
    if url.startswith("sqlite"):
        with sqlite3.connect(SQLITE_PATH) as conn:
            return conn.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def bench_backend(backend: str, files: dict, keep: bool) -> list[dict]:
    url = fresh_database(backend)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--no-input", "-v", "0"], cwd=ROOT,
                   env=_env(url), check=True)
    out = []
    for label in ("first", "re-run"):
        result = run_import(url, files)
        result.update(backend=backend, run=label, files=file_results(url))
        out.append(result)
        print_run(result)
        if label == "first" and backend == "postgres":
            out.append(raw_copy(url))
    if not keep:
        if backend == "sqlite":
            fresh_database("sqlite")
        else:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {PG_NAME} WITH (FORCE)")
    return out


def raw_copy(url: str) -> dict:
    """The yardstick: COPY of the same interaction rows (as stored, ids resolved) into an unindexed,
    unconstrained copy of the table, timed alone, in the same run and on the same server."""
    import psycopg

    with psycopg.connect(url) as conn:
        buffer = bytearray()
        with conn.cursor().copy("COPY crm_interaction TO STDOUT (FORMAT csv)") as copy:
            for chunk in copy:
                buffer += chunk
        conn.execute("DROP TABLE IF EXISTS bench_raw_copy")
        conn.execute("CREATE TABLE bench_raw_copy (LIKE crm_interaction INCLUDING DEFAULTS)")
        conn.commit()
        rows = conn.execute("SELECT COUNT(*) FROM crm_interaction").fetchone()[0]
        started = time.monotonic()
        with conn.cursor().copy("COPY bench_raw_copy FROM STDIN (FORMAT csv)") as copy:
            for at in range(0, len(buffer), 1 << 20):
                copy.write(buffer[at:at + (1 << 20)])
        conn.commit()
        seconds = time.monotonic() - started
        conn.execute("DROP TABLE bench_raw_copy")
        conn.commit()
    print(f"\npostgres / raw COPY of the {rows:,} stored interaction rows into an unindexed copy of the table: "
          f"{seconds:.1f} s, {rows / seconds:,.0f} rows/s")
    return {"backend": "postgres", "run": "raw COPY (yardstick)", "wall": seconds, "cpu": float("nan"),
            "rss_mb": float("nan"), "load": os.getloadavg()[0], "files": [("interactions", rows, rows, 0, 0, 0, seconds)]}


def print_run(result: dict) -> None:
    total_rows = sum(f[1] for f in result["files"])
    print(f"\n{result['backend']} / {result['run']}: wall {result['wall']:.1f} s, "
          f"{total_rows / result['wall']:,.0f} rows/s overall, import process CPU {result['cpu']:.1f} s, "
          f"peak RSS {result['rss_mb']:.0f} MB, "
          f"load avg (1 min) at end {result['load']:.2f}")
    print(f"  {'file':<13}{'rows':>10}{'created':>10}{'updated':>9}{'unchanged':>11}{'rejected':>9}"
          f"{'seconds':>9}{'rows/s':>10}")
    for kind, rows, created, updated, unchanged, rejected, seconds in result["files"]:
        print(f"  {kind:<13}{rows:>10,}{created:>10,}{updated:>9,}{unchanged:>11,}{rejected:>9,}"
              f"{seconds:>9.1f}{rows / max(seconds, 1e-9):>10,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--rows", type=int, default=1_000_000, help="interaction rows")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--products", type=int, default=5_000)
    parser.add_argument("--files", type=Path, default=None,
                        help="folder of the input files (default: a folder under the temp directory)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    args = parser.parse_args()
    folder = args.files or Path(tempfile.gettempdir()) / f"crm_import_bench_{args.rows}"
    if folder.resolve().is_relative_to(ROOT):
        raise SystemExit("write the input files outside the repository")
    files = make_files(folder, args.rows, args.customers, args.products)
    print(f"machine: {os.cpu_count()} CPUs, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB RAM, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    results = []
    for backend in backends:
        results += bench_backend(backend, files, args.keep)
    print("\n| backend | run | interactions rows/s | all rows/s (wall) | wall s | client CPU s | peak RSS MB | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        inter = [f for f in r["files"] if f[0] == "interactions"]
        inter_rate = f"{inter[0][1] / inter[0][6]:,.0f}" if inter else "-"
        total = sum(f[1] for f in r["files"])
        print(f"| {r['backend']} | {r['run']} | {inter_rate} | {total / r['wall']:,.0f} | {r['wall']:.1f} "
              f"| {r['cpu']:.1f} | {r['rss_mb']:.0f} | {r['load']:.2f} |")


if __name__ == "__main__":
    main()
