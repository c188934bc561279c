"""Cursors of keyset pages (``?cursor=`` of the API's lists and the web customer list): a row's
sort key, signed.

A cursor is ``django.core.signing``'s URL-safe base64 of the JSON {ordering, part, values,
reverse, page}, with an HMAC made with SECRET_KEY and salted with the list's name: clients pass
it back as it is and cannot forge or alter one, nor use one list's cursor on another (a bad
cursor is a 400, never a query). The values of a sort key keep their type (text, number,
timestamp), so the key compares exactly as the row it came from.
"""
from __future__ import annotations

from datetime import datetime

from django.core import signing

_SALT = "web.cursors."
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


def dumps(scope: str, ordering: str, key: tuple, *, reverse: bool = False, page: int | None = None) -> str:
    """The cursor of the page after (``reverse``: before) the row whose sort key is ``key``
    ((part, [values]): an item of ml.customer_lists.ListPage.keys) in list ``scope`` sorted by
    ``ordering``; ``page``: the number of the page it leads to, when the list shows numbers."""
    part, values = key
    return signing.dumps({"o": ordering, "p": part, "k": [_dump_value(v) for v in values], "r": bool(reverse),
                          "n": page}, salt=_SALT + scope, compress=False)


def loads(cursor: str, scope: str, ordering: str, lengths: tuple) -> tuple[tuple, bool, int | None]:
    """(sort key, reverse, page number) of a cursor made by :func:`dumps` for list ``scope`` and
    ``ordering``, whose parts have keys of ``lengths`` values; BadCursor for anything else
    (forged, altered, from another list or ordering, malformed)."""
    if len(cursor) > MAX_LENGTH:
        raise BadCursor("too long")
    try:
        data = signing.loads(cursor, salt=_SALT + scope)
    except signing.BadSignature:
        raise BadCursor("not a cursor of this list") from None
    try:
        made_for, part, items, reverse, page = data["o"], data["p"], data["k"], data["r"], data["n"]
        values = [_load_value(item) for item in items]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadCursor("not a sort key") from exc
    if made_for != ordering:
        raise BadCursor("made for another ordering")
    if not (isinstance(part, int) and not isinstance(part, bool) and 0 <= part < len(lengths)
            and len(values) == lengths[part]) or not isinstance(reverse, bool) \
            or not (page is None or isinstance(page, int) and not isinstance(page, bool) and page >= 1):
        raise BadCursor("not a sort key")
    return (part, values), reverse, page
