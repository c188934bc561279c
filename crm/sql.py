"""Prepared reads for the hottest requests: SQL written once per process, rows converted by Django.

The ORM compiles a query's SQL again on every request; for a customer detail that compiling
cost more CPU than the database spent answering. A :class:`Select` names model fields per
table alias, builds its SELECT list once, and turns each row into Python values with the very
converters the ORM applies (time zones on SQLite, JSON text, booleans), so a raw read gives
what a queryset would have given.

:func:`fetchall` runs such a query. On PostgreSQL it binds the parameters on the server, so
psycopg prepares a statement it has run a few times on a connection (``prepare_threshold``,
5) and PostgreSQL plans it once per connection instead of on every request: planning the
customer query's seven joins took 0.7 ms, running it 0.14 ms. (Behind PgBouncer in
transaction mode this needs PgBouncer 1.21+ with ``max_prepared_statements`` set.)
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import cached_property

from django.db import connection, transaction


def table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(model, name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


class Select:
    """``Select([("c", Customer, ("id", "name")), ("o", User, ("username",))])``: the SELECT list
    ``c."id", c."name", o."username"`` and ``convert(row)`` -> ``{"c.id": ..., "o.username": ...}``."""

    def __init__(self, parts):
        self.fields = [(alias, model._meta.get_field(name)) for alias, model, names in parts for name in names]
        self.keys = [f"{alias}.{field.name}" for alias, field in self.fields]

    def sql(self) -> str:
        quote = connection.ops.quote_name
        return ", ".join(f"{alias}.{quote(field.column)}" for alias, field in self.fields)

    @cached_property
    def _converters(self):
        # The same converters SQLCompiler.apply_converters uses: the backend's, then the field's;
        # only for the columns that have any (on PostgreSQL mostly the JSON ones).
        out = []
        for key, (alias, field) in zip(self.keys, self.fields):
            expression = field.get_col(alias)
            functions = connection.ops.get_db_converters(expression) + field.get_db_converters(connection)
            if functions:
                out.append((key, functions, expression))
        return out

    def convert(self, row) -> dict:
        values = dict(zip(self.keys, row))
        for key, functions, expression in self._converters:
            value = values[key]
            for function in functions:
                value = function(value, expression, connection)
            values[key] = value
        return values

    def __len__(self):
        return len(self.fields)


def fetchall(query: str, params) -> list[tuple]:
    """The rows of a read built from :class:`Select` parts (see the module's text on preparing)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and not connection.settings_dict["OPTIONS"].get("server_side_binding"):
            from django.db.backends.postgresql.base import ServerBindingCursor  # needs psycopg: PostgreSQL only

            cursor.cursor.close()
            cursor.cursor = ServerBindingCursor(connection.connection)
        cursor.execute(query, params)
        return cursor.fetchall()


@contextmanager
def report_read():
    """Reads inside run as PostgreSQL reports should (``SET LOCAL``, this transaction only): JIT
    compiling off and a larger ``work_mem`` for their hashes and sorts. For the aggregate reads over
    a large table that the planner rightly costs above ``jit_above_cost`` but that finish in about
    a second: at 500,000 suggestions (bench/funnel_bench.py) compiling the uplift read took 1.7 of
    its 3.1 s, and with the default 4 MB its hash of the window's purchases spilled to disk (64 MB:
    3.0 s -> 1.3 s). Elsewhere it does nothing."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:  # set_config(..., true): SET LOCAL, both in one statement
            cursor.execute("SELECT set_config('jit', 'off', true), set_config('work_mem', %s, true)",
                           [REPORT_WORK_MEM])
        yield


REPORT_WORK_MEM = "64MB"  # per sort or hash of one report read; the server default stays for the rest
