"""Synthetic demo business generator (pure numpy / pandas, no Django).

``generate()`` returns three DataFrames -- ``customers``, ``products`` and
``interactions`` -- whose columns are exactly the CRM's CSV import format, so a
caller can simply ``df.to_csv(path, index=False)`` each of them.

The data has real, recoverable structure for the ML parts of the CRM:

* customers belong to one of several latent kinds (``demo_kind`` column):
  ``loyal`` (frequent, gamma-regular inter-purchase times), ``big_occasional``
  (rare but large baskets), ``lapsing`` (active, then drop out after a geometric
  number of orders), ``one_off`` (a single purchase), ``bargain`` (many small,
  cheap, discounted orders) and ``refund_prone`` (refund 20-40% of orders);
* each customer has a Dirichlet taste vector over product categories and a few
  favourite products re-bought on a per-product replenishment rhythm;
* some products have a complement (printer -> toner, coffee -> filters ...)
  that is added to the basket with high probability;
* purchases follow a weekly pattern and a yearly Nov/Dec bump (implemented by
  time-warping each customer's renewal process through a cumulative intensity);
* views precede some purchases, refunds follow purchases (same order_ref / sku,
  amount <= purchase amount), support tickets precede some refunds, and sales
  reps log calls, meetings and notes for the accounts they own.

Everything is vectorised numpy: there is no Python loop per customer or per
interaction (only per category / per product for catalogue text).
Deterministic for a given ``seed`` (and ``end``).

Modules: tables (the fixed tables), arrays (vectorised helpers), products (the catalogue),
simulation (the customers' behaviour), generator (the steps and the import frames).
"""
from crm.demo.generator import generate
from crm.demo.tables import (
    CATEGORY_NAMES,
    CUSTOMER_COLUMNS,
    INTERACTION_COLUMNS,
    INTERACTION_TYPES,
    KINDS,
    PRODUCT_COLUMNS,
)

__all__ = [
    "CATEGORY_NAMES",
    "CUSTOMER_COLUMNS",
    "INTERACTION_COLUMNS",
    "INTERACTION_TYPES",
    "KINDS",
    "PRODUCT_COLUMNS",
    "generate",
]
