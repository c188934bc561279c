"""Where a CSV row is validated: one record -> the tuple the importer stages, or a rejection.

Each :class:`FileSpec` names a file's columns (README, "Import format") and turns one CSV
record into the tuple the importer stages in the database, or raises :class:`RowError`
naming every bad field. Cells are read by crm.imports.values; the length limits are the
models' (crm.limits). The vectorised twin of these rules, for batches pyarrow can check
column-wise, is crm.imports.batches. Lookups that need the database (does this customer
exist?) happen in crm.imports.staging, in SQL, a batch at a time. No ORM here.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from crm import clock
from crm.imports.values import (
    _EMAIL,
    INTERACTION_TYPES,
    FileError,
    Options,
    RowError,
    _attributes,
    _bool,
    _date,
    _decimal,
    _key,
    _quantity,
    _Row,
    _text,
    parse_timestamp,
)
from crm.limits import CUSTOMER, INTERACTION, PRODUCT, USERNAME


@dataclass(frozen=True)
class FileSpec:
    """What one import file must and may hold, and how a row becomes a staged tuple.

    ``columns`` are the staged tuple's fields after the row number, in order; ``read``
    returns them. ``optional`` columns absent from a file are not written on update, so a
    file without an ``owner`` column keeps the owners already stored.
    """

    kind: str
    key: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    columns: tuple[str, ...]
    read: Callable[[dict, tuple[str, ...], _Row], tuple]
    always_written: tuple[str, ...] = field(default=())

    @property
    def known(self) -> tuple[str, ...]:
        return self.required + self.optional

    def parse(self, record: dict, extra: tuple[str, ...], tz) -> tuple:
        """The staged tuple of a record; RowError naming every bad field (optional ones too)."""
        return self.read(record, extra, _Row(Options(tz=tz), strict=True))

    def read_row(self, record: dict, extra: tuple[str, ...], options: Options) -> tuple[tuple, list, str | None]:
        """(staged tuple, warnings, skipped columns as ``,a,b,`` or None); RowError when the row
        cannot load. A bad optional field is skipped with a warning instead."""
        row = _Row(options, strict=False)
        values = self.read(record, extra, row)
        return values, row.warnings, row.keep

    def check_header(self, header: list[str]) -> tuple[str, ...]:
        """Return the extra columns; raise FileError when the header cannot be imported."""
        if not header or all(not name.strip() for name in header):
            raise FileError(f"{self.kind} file has no header row")
        names = [name.strip() for name in header]
        for name in names:
            if any("\udc80" <= ch <= "\udcff" for ch in name):
                raise FileError(f"{self.kind} file header is not valid text in the file's encoding")
            if "\x00" in name:  # every other byte NUL: UTF-16 text that was not recognised as such
                raise FileError(f"{self.kind} file header contains NUL bytes: save the file as UTF-8")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise FileError(f"{self.kind} file header repeats column(s): {', '.join(duplicates)}")
        missing = [name for name in self.required if name not in names]
        if missing:
            raise FileError(f"{self.kind} file is missing required column(s): {', '.join(missing)}")
        return tuple(name for name in names if name and name not in self.known)

    def written_columns(self, header: list[str]) -> tuple[str, ...]:
        """The staged columns this file provides (and so may change on update)."""
        names = {name.strip() for name in header}
        extra = self.check_header(header)
        out = []
        for column in self.columns:
            if column == "attributes":
                if extra:
                    out.append(column)
            elif column in self.always_written or column in names or source_of(column) in names:
                out.append(column)
        return tuple(out)


_SOURCES = {"owner_username": "owner", "customer_key": "customer_external_id", "product_key": "product_sku"}


def source_of(column: str) -> str:
    """The file's column name of a staged column."""
    return _SOURCES.get(column, column)


def _email(value: str) -> str:
    email = _text(value, "email", CUSTOMER["email"])
    if email and not _EMAIL.match(email):
        raise RowError(f"email is not an e-mail address ({email[:60]})")
    return email


def _read_customer(record: dict, extra: tuple[str, ...], row: _Row) -> tuple:
    get = record.get
    values = (
        row.required(_key, record["external_id"], "external_id", CUSTOMER["external_id"]),
        row.optional("name", "", _text, get("name", ""), "name", CUSTOMER["name"]),
        row.optional("email", "", _email, get("email", "")),
        row.optional("phone", "", _text, get("phone", ""), "phone", CUSTOMER["phone"]),
        row.optional("company", "", _text, get("company", ""), "company", CUSTOMER["company"]),
        row.optional("country", "", _text, get("country", ""), "country", CUSTOMER["country"]),
        row.optional("city", "", _text, get("city", ""), "city", CUSTOMER["city"]),
        row.optional("signup_date", None, _date, get("signup_date", ""), "signup_date", row.options.date_format),
        row.optional("owner_username", "", _text, get("owner", ""), "owner", USERNAME),
        _attributes(record, extra),
    )
    row.check()
    return values


def _tags(value: str) -> str:
    tags = ";".join(t for t in (s.strip() for s in value.split(";")) if t)
    if len(tags) > PRODUCT["tags"]:
        raise RowError(f"tags are longer than {PRODUCT['tags']} characters")
    return tags


def _read_product(record: dict, extra: tuple[str, ...], row: _Row) -> tuple:
    get = record.get
    values = (
        row.required(_key, record["sku"], "sku", PRODUCT["sku"]),
        row.required(_key, record["name"], "name", PRODUCT["name"]),
        row.optional("category", "", _text, get("category", ""), "category", PRODUCT["category"]),
        row.optional("price", None, _decimal, get("price", ""), "price"),
        get("description", "").strip(),
        row.optional("tags", "", _tags, get("tags", "")),
        row.optional("active", True, _bool, get("active", ""), "active", True),
        _attributes(record, extra),
    )
    row.check()
    return values


def content_key(parts: tuple) -> str:
    """A stable key for an interaction row that has no external_id (same content, same key)."""
    digest = hashlib.sha1("\x1f".join("" if p is None else str(p) for p in parts).encode(),
                          usedforsecurity=False).hexdigest()
    return f"h-{digest[:32]}"


def _type(value: str) -> str:
    kind = value.strip().lower()
    if kind not in INTERACTION_TYPES:
        raise RowError(f"type {value[:40]!r} is not one of {', '.join(sorted(INTERACTION_TYPES))}")
    return kind


def _past_timestamp(value: str, name: str, tz, date_format) -> datetime:
    """parse_timestamp, refusing a time in the future (crm.clock: only what happened is history)."""
    occurred_at = parse_timestamp(value, name, tz, date_format)
    future = clock.future_reason(occurred_at, tz=tz)
    if future:
        raise RowError(future)
    return occurred_at


def _read_interaction(record: dict, extra: tuple[str, ...], row: _Row) -> tuple:
    get = record.get
    customer_key = row.required(_key, record["customer_external_id"], "customer_external_id", CUSTOMER["external_id"])
    kind = row.required(_type, record["type"])
    occurred_at = row.required(_past_timestamp, record["occurred_at"], "occurred_at", row.options.tz,
                               row.options.date_format)
    product_key = row.optional("product_key", "", _text, get("product_sku", ""), "product_sku", PRODUCT["sku"])
    quantity = row.optional("quantity", 1, _quantity, get("quantity", ""))
    amount = row.optional("amount", None, _decimal, get("amount", ""), "amount")
    order_ref = row.optional("order_ref", "", _text, get("order_ref", ""), "order_ref", INTERACTION["order_ref"])
    channel = row.optional("channel", "", _text, get("channel", ""), "channel", INTERACTION["channel"])
    notes = get("notes", "").strip()
    attributes = _attributes(record, extra)
    # The row's key: a bad one cannot be skipped (the row would get another identity).
    external_id = row.required(_text, get("external_id", ""), "external_id", INTERACTION["external_id"])
    row.check()
    if not external_id:
        external_id = content_key((customer_key, kind, occurred_at.isoformat(), product_key, quantity, amount,
                                   order_ref, channel, notes, attributes))
    return (external_id, customer_key, kind, occurred_at, product_key, quantity, amount, order_ref, channel,
            notes, attributes)


CUSTOMERS = FileSpec(
    kind="customers",
    key="external_id",
    required=("external_id",),
    optional=("name", "email", "phone", "company", "country", "city", "signup_date", "owner"),
    columns=("external_id", "name", "email", "phone", "company", "country", "city", "signup_date",
             "owner_username", "attributes"),
    read=_read_customer,
    always_written=("external_id",),
)
PRODUCTS = FileSpec(
    kind="products",
    key="sku",
    required=("sku", "name"),
    optional=("category", "price", "description", "tags", "active"),
    columns=("sku", "name", "category", "price", "description", "tags", "active", "attributes"),
    read=_read_product,
    always_written=("sku", "name"),
)
INTERACTIONS = FileSpec(
    kind="interactions",
    key="external_id",
    required=("customer_external_id", "type", "occurred_at"),
    optional=("product_sku", "quantity", "amount", "order_ref", "external_id", "channel", "notes"),
    columns=("external_id", "customer_key", "type", "occurred_at", "product_key", "quantity", "amount",
             "order_ref", "channel", "notes", "attributes"),
    read=_read_interaction,
    # A missing quantity column means quantity 1 (the contract's default), so it is always written.
    always_written=("external_id", "customer_key", "type", "occurred_at", "quantity"),
)
SPECS = {spec.kind: spec for spec in (CUSTOMERS, PRODUCTS, INTERACTIONS)}
