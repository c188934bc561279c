"""What other apps keep about a customer, and what they do when the data changes.

crm never imports the apps built on it (ml): they register here, in their AppConfig.ready(),
and crm's personal-data export, erasure, merge and import call what is registered.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CustomerData:
    """Rows another app keeps about customers.

    ``export(customer)``: ``{section: [record]}`` for the personal-data export, in order.
    ``erase(customer_id)``: deletes them; ``{label: rows deleted}``, in order.
    ``merge(kept_id, duplicate_ids)``: moves or drops the duplicates' rows; ``{label: rows}``.
    ``models``: the models these rows live in (the merge moves any other row that refers to a
    customer itself).
    """

    export: Callable
    erase: Callable
    merge: Callable
    models: tuple


_CUSTOMER_DATA: list[CustomerData] = []
_DATA_CHANGED: list[Callable] = []


def register_customer_data(data: CustomerData) -> None:
    _CUSTOMER_DATA.append(data)


def customer_data() -> list[CustomerData]:
    return list(_CUSTOMER_DATA)


def register_data_changed(handler: Callable) -> None:
    """``handler(user=..., trigger=...)`` runs after an import changed stored data
    (e.g. ml queues a retrain when RETRAIN_AFTER_IMPORT is on); returns a list."""
    _DATA_CHANGED.append(handler)


def data_changed(*, user, trigger: str) -> list:
    """Call every registered handler; their results, concatenated."""
    out = []
    for handler in _DATA_CHANGED:
        out.extend(handler(user=user, trigger=trigger))
    return out
