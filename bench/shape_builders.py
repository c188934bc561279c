"""Data shapes made from contract frames by transformation (for bench/shapes.py).

Every builder is a pure function: it takes the contract frames (``customers``, ``products``,
``interactions``: text columns, as ``pd.read_csv(..., dtype=str, keep_default_na=False)``
reads them), never changes them, and returns a :class:`Shape` with new frames, the
``as_of`` and horizon the product is asked for, and the settings the run needs. The frames
keep the rows after ``as_of`` (the truth of the window); the harness imports only the rows
on or before it. Randomness is seeded (``SEED``) so a shape is the same on every run.

The default split is ANCHORS.md's: as_of 2017-10-03, 90 days. Builders that need a date
take it from the ``as_of`` argument, so the tests can use their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

AS_OF = "2017-10-03"
HORIZON_DAYS = 90
SEED = 12


@dataclass(frozen=True)
class Shape:
    """A data shape: contract frames (rows on both sides of ``as_of``) and how to run it.

    ``tz``: the TIME_ZONE the product runs with and in which the day of a row is taken
    (None: the day as written); ``note``: what the shape is, in words, for the table;
    ``unbought_products``: import the products that occur in no row too (otherwise only the
    products bought on or before as_of are imported, as ANCHORS does).
    """

    name: str
    customers: pd.DataFrame
    products: pd.DataFrame | None  # None: no products file at all
    interactions: pd.DataFrame
    as_of: str = AS_OF
    horizon_days: int = HORIZON_DAYS
    tz: str | None = None
    note: str = ""
    unbought_products: bool = False
    env: dict = field(default_factory=dict)

    @property
    def window_end(self) -> str:
        return (pd.Timestamp(self.as_of) + pd.Timedelta(days=self.horizon_days)).strftime("%Y-%m-%d")


def _days(t: pd.DataFrame) -> pd.Series:
    return t["occurred_at"].str[:10]


def _shift_day(day: str, days: int) -> str:
    return (pd.Timestamp(day) + pd.Timedelta(days=days)).strftime("%Y-%m-%d")


def _copy(frames: dict) -> dict:
    return {k: (v.copy() if v is not None else None) for k, v in frames.items()}


def _shape(name, frames, as_of, note, **kw) -> Shape:
    return Shape(name, frames["customers"], frames["products"], frames["interactions"], as_of=as_of,
                 note=note, **kw)


def full(frames: dict, as_of: str = AS_OF) -> Shape:
    """The data as it is: the ANCHORS split (the reference row)."""
    return _shape("full", _copy(frames), as_of, "the data as it is (ANCHORS split)")


def no_refunds(frames: dict, as_of: str = AS_OF) -> Shape:
    """Same as ``full``: the Complete Journey sample has no refund rows at all."""
    return _shape("no_refunds", _copy(frames), as_of, "= full: the data has no refunds (a second run of full)")


def _history(frames: dict, as_of: str, days: int, name: str, note: str) -> Shape:
    f = _copy(frames)
    t = f["interactions"]
    first = _shift_day(as_of, -(days - 1))
    f["interactions"] = t[_days(t) >= first]
    return _shape(name, f, as_of, note)


def short_1h(frames: dict, as_of: str = AS_OF, horizon_days: int = HORIZON_DAYS) -> Shape:
    """History as long as the horizon: only the ``horizon_days`` days up to as_of (and the window)."""
    return _history(frames, as_of, horizon_days, "short_1h", f"history = {horizon_days} days = 1 horizon")


def short_1_5h(frames: dict, as_of: str = AS_OF, horizon_days: int = HORIZON_DAYS) -> Shape:
    """History of 1.5 horizons (135 days for 90) up to as_of."""
    days = horizon_days * 3 // 2
    return _history(frames, as_of, days, "short_1_5h", f"history = {days} days = 1.5 horizons")


def no_catalogue(frames: dict, as_of: str = AS_OF) -> Shape:
    """Purchases without ``product_sku`` (the column is dropped) and no products file."""
    f = _copy(frames)
    f["interactions"] = f["interactions"].drop(columns=["product_sku"])
    f["products"] = None
    return _shape("no_catalogue", f, as_of, "no product_sku column, no products file")


def no_amounts(frames: dict, as_of: str = AS_OF) -> Shape:
    """Purchases without ``amount`` (the column is dropped)."""
    f = _copy(frames)
    f["interactions"] = f["interactions"].drop(columns=["amount"])
    return _shape("no_amounts", f, as_of, "no amount column")


def refunds(frames: dict, as_of: str = AS_OF, share: float = 0.05) -> Shape:
    """For a seeded ``share`` of the purchase rows on or before as_of, a refund row of the same
    amount, quantity, product and order 1-14 days later (some of them fall in the window)."""
    f = _copy(frames)
    t = f["interactions"]
    rng = np.random.default_rng(SEED)
    eligible = np.flatnonzero(((t["type"] == "purchase") & (_days(t) <= as_of)).to_numpy())
    picked = np.sort(rng.choice(eligible, int(round(share * len(eligible))), replace=False))
    r = t.iloc[picked].copy()
    lag = pd.to_timedelta(rng.integers(1, 15, len(r)), unit="D")
    stamps = pd.to_datetime(r["occurred_at"].str[:19], format="ISO8601") + lag
    r["occurred_at"] = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S")
    r["type"] = "refund"
    if "external_id" in r:
        r["external_id"] = r["external_id"] + "-refund"
    f["interactions"] = pd.concat([t, r], ignore_index=True)
    return _shape("refunds", f, as_of, f"a refund row for {share:.0%} of the purchases before as_of, 1-14 days later")


def one_time_buyers(frames: dict, as_of: str = AS_OF) -> Shape:
    """Only households with exactly one purchase day on or before as_of (their later rows stay)."""
    f = _copy(frames)
    t = f["interactions"]
    before = t[(t["type"] == "purchase") & (_days(t) <= as_of)]
    n_days = _days(before).groupby(before["customer_external_id"]).nunique()
    keep = set(n_days.index[n_days == 1])
    f["interactions"] = t[t["customer_external_id"].isin(keep)]
    f["customers"] = f["customers"][f["customers"]["external_id"].isin(keep)]
    return _shape("one_time_buyers", f, as_of, f"{len(keep)} households with one purchase day before as_of")


def customers_20(frames: dict, as_of: str = AS_OF, n: int = 20, churned: int = 5) -> Shape:
    """``n`` households drawn with a seed: ``n - churned`` with purchases on both sides of as_of
    and ``churned`` with purchases only on or before it (so churn has both classes)."""
    f = _copy(frames)
    t = f["interactions"]
    day = _days(t)
    before = set(t.loc[day <= as_of, "customer_external_id"])
    after = set(t.loc[day > as_of, "customer_external_id"])
    both, only_before = sorted(before & after), sorted(before - after)
    rng = np.random.default_rng(SEED)
    k_churn = min(churned, len(only_before))
    k_both = min(n - k_churn, len(both))
    keep = set(rng.choice(both, k_both, replace=False)) | set(rng.choice(only_before, k_churn, replace=False))
    f["interactions"] = t[t["customer_external_id"].isin(keep)]
    f["customers"] = f["customers"][f["customers"]["external_id"].isin(keep)]
    return _shape("customers_20", f, as_of, f"{k_both} households buying on both sides of as_of, "
                                            f"{k_churn} only before")


def one_category(frames: dict, as_of: str = AS_OF) -> Shape:
    """Every product in one category."""
    f = _copy(frames)
    f["products"] = f["products"].assign(category="ALL PRODUCTS")
    return _shape("one_category", f, as_of, "every product in one category")


def _first_rows_per_pair(t: pd.DataFrame) -> pd.DataFrame:
    """Each (household, product) purchase pair once: its first row in time (ties: file order)."""
    order = t.assign(_ts=pd.to_datetime(t["occurred_at"].str[:19], format="ISO8601"),
                     _pos=np.arange(len(t))).sort_values(["_ts", "_pos"], kind="stable")
    is_purchase = order["type"] == "purchase"
    first = order[is_purchase].drop_duplicates(["customer_external_id", "product_sku"], keep="first")
    kept = pd.concat([first, order[~is_purchase]]).sort_values("_pos")
    return kept.drop(columns=["_ts", "_pos"])


def ratings_like(frames: dict, as_of: str = AS_OF) -> Shape:
    """Each (household, product) pair kept once, its first row, on both sides of as_of: nobody
    ever buys a product twice (like a ratings matrix)."""
    f = _copy(frames)
    f["interactions"] = _first_rows_per_pair(f["interactions"])
    return _shape("ratings_like", f, as_of, "each household x product once (first row)")


def seasonal_peak(frames: dict, as_of: str = AS_OF, first: str = "2017-08-01", last: str = "2017-08-21",
                  copies: int = 2) -> Shape:
    """A rush inside the history: every purchase row in ``first`` .. ``last`` repeated ``copies``
    more times on the same day, each copy with a new ``order_ref`` and ``external_id``."""
    f = _copy(frames)
    t = f["interactions"]
    day = _days(t)
    rush = t[(t["type"] == "purchase") & (day >= first) & (day <= last)]
    extra = []
    for k in range(1, copies + 1):
        c = rush.copy()
        c["order_ref"] = np.where(c["order_ref"] != "", c["order_ref"] + f"-peak{k}", "")
        if "external_id" in c:
            c["external_id"] = c["external_id"] + f"-peak{k}"
        extra.append(c)
    f["interactions"] = pd.concat([t, *extra], ignore_index=True)
    return _shape("seasonal_peak", f, as_of, f"rows of {first}..{last} x{copies + 1} (new orders)")


def huge_orders(frames: dict, as_of: str = AS_OF, share: float = 0.01, factor: int = 50) -> Shape:
    """Amounts and quantities of a seeded ``share`` of the households x ``factor`` (wholesale)."""
    f = _copy(frames)
    t = f["interactions"]
    households = sorted(set(t["customer_external_id"]))
    rng = np.random.default_rng(SEED)
    big = set(rng.choice(households, max(1, int(round(share * len(households)))), replace=False))
    sel = t["customer_external_id"].isin(big)
    t = t.copy()
    q = pd.to_numeric(t.loc[sel, "quantity"], errors="coerce").fillna(1)
    t.loc[sel, "quantity"] = (q * factor).round().astype(np.int64).astype(str)
    if "amount" in t:
        a = pd.to_numeric(t.loc[sel, "amount"], errors="coerce")
        t.loc[sel, "amount"] = (a * factor).round(2).map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    f["interactions"] = t
    return _shape("huge_orders", f, as_of, f"{len(big)} households ({share:.0%}) with amounts and quantities x{factor}")


def near_midnight_tz(frames: dict, as_of: str = AS_OF, tz: str = "America/New_York",
                     offset: str = "-05:00") -> Shape:
    """Every timestamp moved to 23:30-23:59 of its day (seeded seconds) and written with
    ``offset``; the product runs with ``TIME_ZONE=tz``. In the months where ``tz`` keeps summer
    time (-04:00), 23:30-05:00 is 00:30 local on the next day: the day of a row is its local day."""
    f = _copy(frames)
    t = f["interactions"].copy()
    rng = np.random.default_rng(SEED)
    seconds = rng.integers(0, 30 * 60, len(t))
    t["occurred_at"] = [f"{d}T23:{30 + s // 60:02d}:{s % 60:02d}{offset}"
                        for d, s in zip(_days(t), seconds, strict=True)]
    f["interactions"] = t
    return _shape("near_midnight_tz", f, as_of, f"times 23:30-23:59 {offset}, TIME_ZONE={tz}", tz=tz,
                  env={"TIME_ZONE": tz})


def _most_bought(t: pd.DataFrame, as_of: str, n: int) -> list:
    """The ``n`` SKUs with the most purchase rows on or before as_of (ties: by SKU)."""
    before = t[(t["type"] == "purchase") & (_days(t) <= as_of) & (t["product_sku"] != "")]
    counts = before.groupby("product_sku").size().reset_index(name="n")
    counts = counts.sort_values(["n", "product_sku"], ascending=[False, True])
    return list(counts["product_sku"].head(n))


def _only_products(f: dict, keep: list) -> dict:
    keep = set(keep)
    t = f["interactions"]
    f["interactions"] = t[t["product_sku"].isin(keep)]
    f["products"] = f["products"][f["products"]["sku"].isin(keep)]
    return f


def catalogue_tiny(frames: dict, as_of: str = AS_OF, n: int = 30) -> Shape:
    """Only the ``n`` most bought products (by purchase rows before as_of); other rows dropped."""
    f = _copy(frames)
    f = _only_products(f, _most_bought(f["interactions"], as_of, n))
    return _shape("catalogue_tiny", f, as_of, f"the {n} most bought products only")


def catalogue_large(frames: dict, as_of: str = AS_OF, size: int = 50_000) -> Shape:
    """products.csv padded with synthetic never-bought products, so that the imported catalogue
    (the products bought on or before as_of, plus these) has ``size`` products."""
    f = _copy(frames)
    p, t = f["products"], f["interactions"]
    bought = set(t.loc[(_days(t) <= as_of) & (t["type"] == "purchase"), "product_sku"]) & set(p["sku"])
    n_pad = max(0, size - len(bought))
    rng = np.random.default_rng(SEED)
    categories = p["category"].to_numpy()
    prices = p["price"].to_numpy()
    pick = rng.integers(0, len(p), n_pad) if len(p) else np.zeros(n_pad, int)
    pad = pd.DataFrame({c: "" for c in p.columns}, index=range(n_pad))
    pad["sku"] = [f"synthetic-{i:06d}" for i in range(n_pad)]
    pad["name"] = [f"SYNTHETIC ITEM {i}" for i in range(n_pad)]
    if "category" in p:
        pad["category"] = categories[pick] if len(p) else ""
    if "price" in p:
        pad["price"] = prices[pick] if len(p) else ""
    if "description" in p:
        pad["description"] = "synthetic product, never bought"
    if "active" in p:
        pad["active"] = "true"
    f["products"] = pd.concat([p, pad[p.columns]], ignore_index=True)
    return _shape("catalogue_large", f, as_of, f"products padded to {size:,} with {n_pad:,} never-bought ones",
                  unbought_products=True)


def dense_ratings(frames: dict, as_of: str = AS_OF, n: int = 500) -> Shape:
    """``ratings_like`` restricted to its ``n`` most bought products."""
    f = _copy(frames)
    f["interactions"] = _first_rows_per_pair(f["interactions"])
    f = _only_products(f, _most_bought(f["interactions"], as_of, n))
    return _shape("dense_ratings", f, as_of, f"ratings_like on the {n} most bought products")


# name -> builder, in the order of the table. ``forecast`` / ``recommendation`` say which
# kinds the shape is about (every kind runs and is reported on every shape).
BUILDERS = {
    "full": full,
    "no_refunds": no_refunds,
    "short_1h": short_1h,
    "short_1_5h": short_1_5h,
    "no_catalogue": no_catalogue,
    "no_amounts": no_amounts,
    "refunds": refunds,
    "one_time_buyers": one_time_buyers,
    "customers_20": customers_20,
    "one_category": one_category,
    "ratings_like": ratings_like,
    "seasonal_peak": seasonal_peak,
    "huge_orders": huge_orders,
    "near_midnight_tz": near_midnight_tz,
    "catalogue_tiny": catalogue_tiny,
    "catalogue_large": catalogue_large,
    "dense_ratings": dense_ratings,
}
