"""Keyset pagination's one rule: the rows after a row's sort key, as a condition an index can seek to.

A list sorted by terms that are never NULL and end unique (a tie-breaker such as the id) is read
page by page with "after the last row's key" instead of OFFSET: the database starts at the key
in its index, so a deep page costs what the first does, and rows added or removed between two
reads shift nothing. Used by ml.customer_lists (each part of a customer list) and by the API's
plain lists (web.api.pagination).
"""
from django.db.models import Q


def after(terms, values) -> Q:
    """Rows after ``values`` in the order of ``terms`` [(path, descending)], none of them NULL:
    the lexicographic comparison, led by a bound on the first term the index can seek to."""
    condition = None
    for (path, descending), value in reversed(list(zip(terms, values, strict=True))):
        strict = Q(**{f"{path}__{'lt' if descending else 'gt'}": value})
        condition = strict if condition is None else strict | (Q(**{path: value}) & condition)
    path, descending = terms[0]
    return Q(**{f"{path}__{'lte' if descending else 'gte'}": values[0]}) & condition


def order(terms) -> list[str]:
    """``terms`` as order_by arguments."""
    return [f"{'-' if descending else ''}{path}" for path, descending in terms]


def reversed_terms(terms) -> tuple:
    """The same terms in the opposite direction (a list read from its end)."""
    return tuple((path, not descending) for path, descending in terms)


def terms_of(order_by: tuple) -> tuple:
    """order_by names ("name", "-id") as terms [(field, descending)]."""
    return tuple((name.lstrip("-"), name.startswith("-")) for name in order_by)


class ListPage:
    """One page of a list read by keyset or offset: ``ids`` (the rows, or their ids) in the list's
    order, ``keys`` (each row's sort key (part, [values]), for a cursor; part 0 for a list of one
    part), ``total`` (every row of the list) and ``more``: whether a row follows the page in the
    direction it was read (after it; before it when read in reverse)."""

    def __init__(self, ids, keys, total, more):
        self.ids, self.keys, self.total, self.more = ids, keys, total, more
