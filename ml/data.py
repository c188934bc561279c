"""The only bridge between the ORM and pandas: bulk reads cut at ``as_of``, bulk writes.

Reads stream the rows straight from the database cursor (COPY on PostgreSQL) into the
frames of :mod:`ml.pipelines.schema`; writes use COPY (PostgreSQL) or executemany (SQLite),
never model instances, so a 100,000-customer run writes its rows in seconds.
"""
from __future__ import annotations

import io
import itertools
from datetime import date, datetime

import numpy as np
import pandas as pd
from django.db import connection
from django.utils import timezone

from crm.models import Customer, Interaction, Product
from crm.streams import BlockReader
from ml.pipelines.schema import INTERACTION_COLUMNS, NO_PRODUCT, end_of

# Rows fetched per round trip on SQLite (PostgreSQL streams with COPY instead).
FETCH_SIZE = 50_000


def cutoff(as_of: date) -> datetime:
    """The first instant after the local day ``as_of`` (midnight in ``TIME_ZONE``): rows at or after
    it are never read. The pipelines' own cut (:func:`ml.pipelines.schema.end_of`) on the frame's
    local wall-clock times, made an instant in ``TIME_ZONE``: the database read and the pipelines
    end the as-of day at the same moment."""
    return timezone.make_aware(end_of(as_of).to_pydatetime(), timezone.get_default_timezone())


def latest_interaction_day() -> date | None:
    """The default ``as_of``: the local day (``TIME_ZONE``) of the latest interaction that is not in
    the future, and never after today. The clock is a fact: a row dated ahead (stored before
    crm.clock refused them at every door, or within its clock-skew tolerance) neither moves the
    models' "data up to" date nor is read, since every frame is cut at ``as_of``. None: no
    interaction up to now."""
    now = timezone.now()
    latest = (Interaction.objects.filter(occurred_at__lte=now).order_by("-occurred_at")
              .values_list("occurred_at", flat=True).first())
    if latest is None:
        return None
    return min(timezone.localtime(latest).date(), timezone.localtime(now).date())


_ARROW_TYPES = {"int64": "int64", "float64": "float64", str: "string"}


def _copy_frame(raw, query: str, columns: list[str], dtypes: dict) -> pd.DataFrame | None:
    """PostgreSQL: the rows of ``query`` by COPY, parsed by pyarrow in blocks as they stream in
    (several threads, typed columns, ~the frame's own size in memory); None when there are none.
    Columns not in ``dtypes`` (times, dates) are typed by pyarrow, an empty field as null."""
    import pyarrow as pa  # noqa: PLC0415 -- only a process that trains reads frames
    import pyarrow.csv as pcsv  # noqa: PLC0415 -- (as above)

    with raw.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as copy:
        blocks = iter(copy)
        first = next(blocks, None)
        if first is None:
            return None
        types = {c: getattr(pa, _ARROW_TYPES[d])() for c, d in dtypes.items() if d in _ARROW_TYPES}
        reader = pcsv.open_csv(io.BufferedReader(BlockReader(itertools.chain([first], blocks)), 1 << 20),
                               read_options=pcsv.ReadOptions(column_names=columns, block_size=1 << 23),
                               convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                                                   quoted_strings_can_be_null=False))
        table = pa.Table.from_batches(list(reader), schema=reader.schema)
    return table.to_pandas(self_destruct=True, split_blocks=True)


def _adbc_conninfo() -> str | None:
    """The libpq connection string of Django's PostgreSQL connection, for ADBC; None when ADBC
    is not installed or must not be used: inside a transaction (rows written by it, a test's
    say, are invisible to another connection), the COPY path reads them."""
    if connection.in_atomic_block:
        return None
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401, PLC0415 -- optional: the COPY path is the fallback
    except ImportError:
        return None
    from psycopg.conninfo import make_conninfo  # noqa: PLC0415 -- the PostgreSQL backend's driver

    connection.ensure_connection()
    info = connection.connection.info
    return make_conninfo(info.dsn, **({"password": info.password} if info.password else {}))


def _adbc_frame(conninfo: str, query: str, columns: list[str]) -> pd.DataFrame:
    """PostgreSQL through ADBC: libpq's binary COPY decoded into Arrow columns in C++, no text
    and no Python object per row (10.5 M interactions in ~6 s at ~1.3 GB peak, against ~25 s
    and 4 GB for text COPY parsed in Python; BENCHMARKS.md). Columns are renamed by position."""
    import adbc_driver_postgresql.dbapi as adbc  # noqa: PLC0415 -- (as above)

    with adbc.connect(conninfo) as conn, conn.cursor() as cursor:
        cursor.execute(query)
        table = cursor.fetch_arrow_table()
    return table.rename_columns(columns).to_pandas(self_destruct=True, split_blocks=True)


def _read(sql: str, params: list, columns: list[str], dtypes: dict) -> pd.DataFrame:
    """Run a SELECT and return its rows as a frame, streamed rather than built from objects."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor
            query = raw.mogrify(sql, params) if params else sql
            conninfo = _adbc_conninfo()
            if conninfo is not None:
                frame = _adbc_frame(conninfo, query, columns)
            else:
                frame = _copy_frame(raw, query, columns, dtypes)
            if frame is None or not len(frame):
                return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, object)) for c in columns})
            return frame
        cursor.execute(sql, params)
        chunks = []
        while True:
            rows = cursor.fetchmany(FETCH_SIZE)
            if not rows:
                break
            chunks.append(pd.DataFrame.from_records(rows, columns=columns))
    if not chunks:
        return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, object)) for c in columns})
    frame = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
    return frame


def interactions_frame(as_of: date | None = None, customer_ids=None, exclude_customer_ids=None,
                       customer_range: tuple[int, int] | None = None) -> pd.DataFrame:
    """Interactions up to the end of ``as_of`` as the schema frame (one row per interaction).

    A purchase or refund without an order_ref is its own order (``row:<id>``). ``customer_range``
    ``(first, last)``: only the customers whose id is between them (inclusive), cut in the query
    (a scoring chunk reads its own customers, never the whole table).
    """
    table = Interaction._meta.db_table
    where, params = [], []
    if as_of is not None:
        where.append("occurred_at < %s")
        # As the database stores it (SQLite compares text: UTC without an offset).
        params.append(connection.ops.adapt_datetimefield_value(cutoff(as_of)))
    if customer_range is not None:
        where.append("customer_id BETWEEN %s AND %s")
        params.extend([int(customer_range[0]), int(customer_range[1])])
    sql = (f"SELECT customer_id, COALESCE(product_id, {NO_PRODUCT}), type, occurred_at, quantity, "
           f"CAST(COALESCE(amount, 0) AS DOUBLE PRECISION), CASE WHEN order_ref = '' THEN 'row:' || CAST(id AS TEXT) ELSE order_ref END "
           f"FROM {table}" + (f" WHERE {' AND '.join(where)}" if where else "")
           # A fixed row order: the same data gives the same frame (and the same sums, to the last
           # bit) whatever order the database happens to keep its rows in after updates.
           + " ORDER BY id")
    columns = list(INTERACTION_COLUMNS)
    frame = _read(sql, params, columns, {"customer_id": "int64", "product_id": "int64", "type": str,
                                         "quantity": "int64", "amount": "float64", "order_ref": str})
    frame["customer_id"] = frame["customer_id"].astype("int64")
    frame["product_id"] = frame["product_id"].astype("int64")
    frame["quantity"] = frame["quantity"].astype("int64")
    frame["amount"] = frame["amount"].astype("float64")
    frame["type"] = frame["type"].astype(str)
    frame["order_ref"] = frame["order_ref"].astype(str)
    frame["occurred_at"] = _local_naive(frame["occurred_at"])
    if customer_ids is not None:
        frame = frame[frame["customer_id"].isin(np.asarray(list(customer_ids)))]
    if exclude_customer_ids is not None and len(exclude_customer_ids):
        frame = frame[~frame["customer_id"].isin(np.asarray(list(exclude_customer_ids)))]
    return frame.reset_index(drop=True)


def _local_naive(values: pd.Series) -> pd.Series:
    """Stored instants as naive wall-clock times in ``TIME_ZONE``: the pipelines cut and count
    whole days on the times they are given, and a day is the company's local day (a purchase
    at 23:59 in New York on the as-of day is 04:59 UTC the next day and still belongs to it),
    the same day :func:`cutoff` ends."""
    parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    zone = str(timezone.get_default_timezone())
    if zone != "UTC":
        parsed = parsed.dt.tz_convert(zone)
    return parsed.dt.tz_localize(None).astype("datetime64[ns]")


def products_frame() -> pd.DataFrame:
    rows = Product.objects.values_list("id", "sku", "name", "category", "description", "tags", "active", "price")
    frame = pd.DataFrame.from_records(list(rows), columns=["product_id", "sku", "name", "category", "description",
                                                           "tags", "active", "price"])
    frame["product_id"] = frame["product_id"].astype("int64")
    frame["active"] = frame["active"].astype(bool)
    frame["price"] = pd.to_numeric(frame["price"], errors="coerce").astype("float64")
    for column in ("sku", "name", "category", "description", "tags"):
        frame[column] = frame[column].astype(str)
    return frame


def customers_frame(exclude_ids=None) -> pd.DataFrame:
    columns = ["customer_id", "external_id", "signup_date", "owner_id"]
    frame = _read(f"SELECT id, external_id, signup_date, COALESCE(owner_id, -1) FROM {Customer._meta.db_table}",
                  [], columns, {"customer_id": "int64", "external_id": str, "owner_id": "int64"})
    frame["customer_id"] = frame["customer_id"].astype("int64")
    frame["owner_id"] = frame["owner_id"].astype("int64")
    frame["external_id"] = frame["external_id"].astype(str)
    frame["signup_date"] = pd.to_datetime(frame["signup_date"].replace("", None), errors="coerce")
    if exclude_ids is not None and len(exclude_ids):
        frame = frame[~frame["customer_id"].isin(np.asarray(list(exclude_ids)))]
    return frame.reset_index(drop=True)


def _sql_value(value):
    """Plain Python values for the database driver (numpy scalars are not adapted by sqlite3)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def bulk_insert(model, columns: list[str], rows) -> int:
    """Insert an iterable of tuples into ``model``'s table: COPY on PostgreSQL, executemany on SQLite.

    ``columns`` are database column names (``customer_id``, not ``customer``); JSON values
    must already be serialised to text. Returns the number of rows written.
    """
    table = model._meta.db_table
    count = 0
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([_sql_value(v) for v in row])
                    count += 1
            return count
        marks = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        batch = []
        for row in rows:
            batch.append([_sql_value(v) for v in row])
            if len(batch) >= 10_000:
                cursor.executemany(sql, batch)
                count += len(batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)
            count += len(batch)
    return count


# Rows per COPY block (a block's CSV text, ~30 MB for suggestions, is the write's extra memory).
WRITE_BATCH = 200_000


def write_frame(model, frame: pd.DataFrame) -> int:
    """Insert ``frame`` (columns named as ``model``'s database columns; JSON values already text;
    NaN and None written as NULL) into its table; returns the rows written.

    PostgreSQL: COPY in CSV, each block of WRITE_BATCH rows turned into CSV text by pyarrow's
    writer in C++ (a string quoted, so an empty one stays empty; a null unquoted, so it is NULL),
    where :func:`bulk_insert` hands every value to the driver from Python (~7 µs a suggestion row
    against ~1). SQLite: executemany, the columns turned into Python lists a block at a time."""
    columns = [str(c) for c in frame.columns]
    if connection.vendor != "postgresql":
        return bulk_insert(model, columns, _frame_rows(frame))
    import pyarrow as pa  # noqa: PLC0415 -- pandas' optional engine, loaded by the writes that use it
    import pyarrow.csv as pa_csv  # noqa: PLC0415

    options = pa_csv.WriteOptions(include_header=False)
    sql = f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for start in range(0, len(frame), WRITE_BATCH):
            sink = pa.BufferOutputStream()
            pa_csv.write_csv(pa.Table.from_pandas(frame.iloc[start:start + WRITE_BATCH], preserve_index=False),
                             sink, write_options=options)
            copy.write(memoryview(sink.getvalue()))
    return len(frame)


def _frame_rows(frame: pd.DataFrame):
    """The frame's rows as tuples of plain Python values (NaN as None), a block at a time."""
    for start in range(0, len(frame), WRITE_BATCH):
        part = frame.iloc[start:start + WRITE_BATCH]
        columns = []
        for name in part.columns:
            values = part[name]
            if values.dtype.kind == "f":
                columns.append(values.astype(object).where(values.notna(), None).tolist())
            elif values.dtype.kind in "iub":
                columns.append(values.to_numpy().tolist())
            else:
                columns.append(list(values))
        yield from zip(*columns)
