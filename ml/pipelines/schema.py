"""The frames every pipeline takes as input (built by ``ml/data.py``).

``interactions`` — one row per stored interaction, already cut at ``as_of`` by the caller
when the caller says so (pipelines must still never look past the ``as_of`` they are given):

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
"""

INTERACTION_TYPES = ("purchase", "refund", "view", "email", "call", "meeting", "support", "note")

INTERACTION_COLUMNS = (
    "customer_id", "product_id", "type", "occurred_at", "quantity", "amount", "order_ref",
)
PRODUCT_COLUMNS = ("product_id", "sku", "name", "category", "description", "tags", "active", "price")
CUSTOMER_COLUMNS = ("customer_id", "external_id", "signup_date", "owner_id")

NO_PRODUCT = -1
