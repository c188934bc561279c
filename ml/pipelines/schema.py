"""The frames every pipeline takes as input (built by ``ml/data.py``).

``interactions`` — one row per stored interaction, already cut at ``as_of`` by the caller
when the caller says so (pipelines must still never look past the ``as_of`` they are given:
every one of them cuts with :func:`cut` / :func:`visible`, the one rule for it):

=============  ==========================  ==================================================
column         dtype                       meaning
=============  ==========================  ==================================================
customer_id    int64                       primary key of the customer
product_id     int64                       primary key of the product, -1 when none
type           str                         purchase, refund, view, email, call, meeting,
                                           support, note
occurred_at    datetime64[ns] (naive       when it happened, as wall-clock time in the
               local time)                 company's TIME_ZONE: its days are local days
quantity       int64                       units (>= 0, default 1)
amount         float64                     money: paid for a purchase, refunded (positive)
                                           for a refund, 0 when not given
order_ref      str                         order key; a purchase without one is its own order
                                           (data.py fills a unique key per row)
=============  ==========================  ==================================================

``products`` — product_id (int64), sku (str), name (str), category (str, "" when none),
description (str), tags (str, ``;``-separated), active (bool), price (float64, NaN when none).

``customers`` — customer_id (int64), external_id (str), signup_date (datetime64[ns], NaT when
none), owner_id (int64, -1 when none).

The ``as_of`` rule (one home, here): ``as_of`` is a day, the last one a model may see, whole
and inclusive. ``occurred_at`` is local wall-clock time in ``TIME_ZONE`` (``ml/data.py``
converts the stored instants), so the day ends at local midnight: a row is visible when
``occurred_at < as_of + 1 day`` on those naive local times. ``ml/data.py`` reads the database
up to the same instant (:func:`end_of` made aware in ``TIME_ZONE``), so a purchase at 23:30
local time on the as-of day is read and used, and one at 00:30 the next local day is neither.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

# The stored interaction types (``crm.models.INTERACTION_TYPES``, which the pipelines may not
# import: they are Django-free; tests/ml/test_time_zone_cut.py asserts the two are equal).
INTERACTION_TYPES = ("purchase", "refund", "view", "email", "call", "meeting", "support", "note")
# The types that carry money (an amount paid or refunded); every other type is a touch.
MONEY_TYPES = ("purchase", "refund")

INTERACTION_COLUMNS = (
    "customer_id", "product_id", "type", "occurred_at", "quantity", "amount", "order_ref",
)
PRODUCT_COLUMNS = ("product_id", "sku", "name", "category", "description", "tags", "active", "price")
CUSTOMER_COLUMNS = ("customer_id", "external_id", "signup_date", "owner_id")

NO_PRODUCT = -1

DAY = pd.Timedelta(days=1)


def as_of_day(as_of) -> pd.Timestamp:
    """``as_of`` (a date, a datetime, a Timestamp or an ISO string) as the naive midnight that
    starts its day."""
    return pd.Timestamp(as_of).normalize().tz_localize(None)


def end_of(as_of) -> pd.Timestamp:
    """The first instant after the day ``as_of`` (naive local time): rows at or after it are
    never seen by a model fitted as of ``as_of``."""
    return as_of_day(as_of) + DAY


def visible(frame: pd.DataFrame, as_of) -> np.ndarray:
    """Boolean mask (numpy) of the rows of ``frame`` on or before the day ``as_of``:
    ``occurred_at < end_of(as_of)``."""
    occurred = frame["occurred_at"].to_numpy(dtype="datetime64[ns]")
    return occurred < end_of(as_of).to_datetime64()


def cut(frame: pd.DataFrame, as_of) -> pd.DataFrame:
    """The rows of ``frame`` on or before the day ``as_of`` (index kept, nothing copied
    beyond the selection)."""
    return frame.loc[visible(frame, as_of)]
