"""Cursors of keyset pages (the customer list's ``?cursor=``): a row's sort key, signed.

A cursor is ``django.core.signing``'s URL-safe base64 of the JSON {ordering, part, values,
reverse, page}, with an HMAC made with SECRET_KEY: clients pass it back as it is and cannot
forge or alter one (a bad cursor is a 400, never a query). The values of a sort key keep their
type (text, number, timestamp), so the key compares exactly as the row it came from.
"""
from __future__ import annotations

from datetime import datetime

from django.core import signing

from ml import customer_lists

_SALT = "web.cursors.customer-list"
MAX_LENGTH = 4096  # a sort key is a few values: anything longer is not one of ours


class BadCursor(ValueError):
    """A cursor this server did not make for this list ordering."""


def _dump_value(value):
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f"a sort key value cannot be a {type(value).__name__}")
    return ["s" if isinstance(value, str) else "n", value]


def _load_value(item):
    kind, value = item
    if kind == "t" and isinstance(value, str):
        return datetime.fromisoformat(value)
    if kind == "s" and isinstance(value, str) or kind == "n" and isinstance(value, int | float) \
            and not isinstance(value, bool):
        return value
    raise BadCursor("not a sort key")


def dumps(ordering: str, key: tuple, *, reverse: bool = False, page: int | None = None) -> str:
    """The cursor of the page after (``reverse``: before) the row whose sort key is ``key``
    (an item of ml.customer_lists.ListPage.keys) in ``ordering``; ``page``: the number of the page
    it leads to, when the list shows page numbers."""
    part, values = key
    return signing.dumps({"o": ordering, "p": part, "k": [_dump_value(v) for v in values], "r": bool(reverse),
                          "n": page}, salt=_SALT, compress=False)


def loads(cursor: str, ordering: str) -> tuple[tuple, bool, int | None]:
    """(sort key, reverse, page number) of a cursor made by :func:`dumps` for ``ordering``;
    BadCursor for anything else (forged, altered, from another ordering, malformed)."""
    if len(cursor) > MAX_LENGTH:
        raise BadCursor("too long")
    try:
        data = signing.loads(cursor, salt=_SALT)
    except signing.BadSignature:
        raise BadCursor("not a cursor of this list") from None
    try:
        part, items, reverse, page = data["p"], data["k"], data["r"], data["n"]
        if data["o"] != ordering:
            raise BadCursor("made for another ordering")
        values = [_load_value(item) for item in items]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadCursor("not a sort key") from exc
    if not customer_lists.is_sort_key(ordering, (part, values)) or not isinstance(reverse, bool) \
            or not (page is None or isinstance(page, int) and not isinstance(page, bool) and page >= 1):
        raise BadCursor("not a sort key")
    return (part, values), reverse, page
