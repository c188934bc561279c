"""The embedded Celery broker: kombu's SQLAlchemy transport on a SQLite file under VAR_DIR.

Why not kombu's filesystem transport (the embedded broker until 2026-12): it writes each
message as a file in place, and a worker that lists the folder while a publisher is halfway
through reads a torn file, dies with "Unrecoverable error: JSONDecodeError" and takes the
stack with it (a known kombu problem). A message here is a row written in one SQLite
transaction: a reader sees it whole or not at all (``bench/broker_stress.py`` measures it).

Four changes to kombu's transport, each small:

- the engine gets a busy timeout and WAL mode, so a publisher and the consumer wait for
  each other's short transactions instead of failing with "database is locked";
- the tables are created with a retry, since processes starting together race to create them,
  and a forked child drops its parent's pooled connections;
- a delivered message is deleted in the transaction that takes it (kombu keeps it with
  ``visible = 0`` forever, so the file would grow by every task ever sent);
- ``polling_interval`` is a transport option (kombu's transport passes every option to
  ``create_engine``, which refuses it).

A task taken and not acknowledged when its worker is killed is lost, as it was with the
filesystem transport; the work it stood for is not: imports and training runs are rows in
the product's database, and the sweep sends them again (``crm.jobs``).

This module is imported by the settings and by the worker: no Django import.
"""
from __future__ import annotations

import os
import time
from json import loads
from pathlib import Path
from queue import Empty

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqla
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError

# The URL scheme of this transport. kombu takes only registered names from a URL (never an
# import path), so importing this module (the settings do) registers it.
SCHEME = "crmsqla"
# How long a publisher or the consumer waits for the other's write lock (SQLite busy timeout).
BUSY_TIMEOUT_SECONDS = 30
# How often an idle worker looks for a message: the latency of a task sent to an idle worker.
POLLING_INTERVAL_SECONDS = 0.1
# The transport options this module reads itself; the rest go to create_engine.
_OWN_OPTIONS = ("queue_tablename", "message_tablename", "callback", "errback", "max_retries", "interval_start",
                "interval_step", "interval_max", "retry_errors", "polling_interval")


def url(var_dir: Path) -> str:
    """The broker URL for a SQLite file in ``var_dir`` (this module's transport, SQLite driver)."""
    return f"{SCHEME}+sqlite:///{Path(var_dir) / 'broker.sqlite3'}"


def transport_options() -> dict:
    return {"polling_interval": POLLING_INTERVAL_SECONDS}


def _on_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web process publish while the worker reads; NORMAL is safe with WAL (a
    # power cut can lose the last commits, never tear one).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _create_tables(engine) -> None:
    """Create kombu's tables, tolerating another process doing the same at the same moment.

    kombu creates them on first use in every process, checking then creating: processes that
    start together on a fresh file (run_all's worker and beat after a clone; the stress bench's
    publishers) race, and the loser's CREATE TABLE fails with "table kombu_queue already exists".
    The loser tries again and finds the tables; kombu's own create_all then has nothing to do.
    """
    for attempt in range(10):
        try:
            kombu_sqla.metadata.create_all(engine)
            return
        except OperationalError:
            if attempt == 9:
                raise
            time.sleep(0.05 * (attempt + 1))


def _forget_engines_after_fork() -> None:
    """A forked process (a Celery pool child) must not use its parent's pooled SQLite
    connections: drop them without closing them (SQLAlchemy's advice for multiprocessing), so
    the child opens its own."""
    for engine, _sessions in kombu_sqla.Channel._engines.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_engines_after_fork)


class Channel(kombu_sqla.Channel):
    def _engine_from_config(self):
        conninfo = self.connection.client
        options = {k: v for k, v in conninfo.transport_options.items() if k not in _OWN_OPTIONS}
        if conninfo.hostname.startswith("sqlite"):
            Path(conninfo.hostname.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
            options.setdefault("connect_args", {"timeout": BUSY_TIMEOUT_SECONDS})
            engine = create_engine(conninfo.hostname, **options)
            event.listen(engine, "connect", _on_connect)
        else:
            engine = create_engine(conninfo.hostname, **options)
        _create_tables(engine)
        return engine

    def _get_or_create(self, queue):
        """kombu's, tolerating another process creating the same queue row at the same moment:
        kombu catches only OperationalError, and the loser's INSERT fails on the unique name
        (IntegrityError); it then reads the winner's row."""
        try:
            return super()._get_or_create(queue)
        except IntegrityError:
            self.session.rollback()
            return self.session.query(self.queue_cls).filter(self.queue_cls.name == queue).one()

    def _get(self, queue):
        """Take the oldest message of ``queue`` and delete it, in one write transaction."""
        obj = self._get_or_create(queue)
        if self.session.bind.name == "sqlite":
            self.session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            msg = (self.session.query(self.message_cls).with_for_update()
                   .filter(self.message_cls.queue_id == obj.id)
                   .filter(self.message_cls.visible != False)  # noqa: E712 (SQL, not Python)
                   .order_by(self.message_cls.sent_at).order_by(self.message_cls.id).limit(1).first())
            if msg is None:
                raise Empty()
            payload = loads(bytes_to_str(msg.payload))
            self.session.delete(msg)
            return payload
        finally:
            self.session.commit()


class Transport(kombu_sqla.Transport):
    Channel = Channel


TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"
