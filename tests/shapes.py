"""Data shapes a company's purchase history may come in, generated in the test (no shared files).

``business()`` plants a shop: customers join over the year, buy at their own Gamma-distributed
rate until an exponential lifetime ends (Pareto/NBD-like, so buy-till-you-die models have real
signal), mostly from their favourite category, paying price x quantity. Every other shape is a
transformation of it, as a real company's data would differ: a short history, no catalogue,
no amounts, refunds, one-time buyers only, 20 customers, one category, ratings-like rows,
a seasonal peak, a few huge orders. Frames follow :mod:`ml.pipelines.schema`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

START = pd.Timestamp("2024-01-01")
DAYS = 365
AS_OF = START + pd.Timedelta(days=DAYS - 1)  # 2024-12-30: the last day of the history


@dataclass(frozen=True)
class Shape:
    name: str
    interactions: pd.DataFrame
    products: pd.DataFrame
    customers: pd.DataFrame
    as_of: pd.Timestamp = AS_OF
    horizon_days: int = 90


def business(n_customers=400, n_products=60, n_categories=6, seed=0, days=DAYS) -> Shape:
    """The planted shop (see the module doc), ``days`` of history ending on AS_OF."""
    rng = np.random.default_rng(seed)
    start = AS_OF - pd.Timedelta(days=days - 1)
    birth = rng.uniform(0, days * 0.6, n_customers)
    rate = rng.gamma(2.0, 0.035, n_customers)  # about one order every 2 weeks on average
    death = birth + rng.exponential(1 / rng.gamma(1.0, 1 / 250, n_customers))
    end = np.minimum(death, days)
    counts = rng.poisson(rate * (end - birth)) + 1
    cust = np.repeat(np.arange(1, n_customers + 1), counts)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    t = birth[cust - 1] + rng.random(len(cust)) * (end - birth)[cust - 1]
    t[first] = birth
    category = np.arange(n_products) % n_categories
    favourite = rng.integers(0, n_categories, n_customers)
    in_favourite = rng.random(len(cust)) < 0.7
    # Products of category c are c, c + n_categories, c + 2 n_categories, ...
    pick_fav = favourite[cust - 1] + n_categories * rng.integers(0, n_products // n_categories, len(cust))
    product = np.where(in_favourite, pick_fav, rng.integers(0, n_products, len(cust))) + 1
    price = np.round(rng.gamma(3.0, 8.0, n_products), 2) + 1.0
    quantity = rng.integers(1, 4, len(cust))
    interactions = pd.DataFrame({
        "customer_id": cust.astype(np.int64),
        "product_id": product.astype(np.int64),
        "type": "purchase",
        "occurred_at": start + pd.to_timedelta(np.floor(t * 86400), unit="s"),
        "quantity": quantity.astype(np.int64),
        "amount": np.round(price[product - 1] * quantity, 2),
        "order_ref": [f"o{i}" for i in range(len(cust))],
    })
    products = pd.DataFrame({
        "product_id": np.arange(1, n_products + 1, dtype=np.int64),
        "sku": [f"SKU{i:03d}" for i in range(1, n_products + 1)],
        "name": [f"Product {i} of range {c}" for i, c in zip(range(1, n_products + 1), category)],
        "category": [f"Range {c}" for c in category],
        "description": [f"range {c} item" for c in category],
        "tags": [f"range{c}" for c in category],
        "active": True,
        "price": price,
    })
    customers = pd.DataFrame({
        "customer_id": np.arange(1, n_customers + 1, dtype=np.int64),
        "external_id": [f"C{i:04d}" for i in range(1, n_customers + 1)],
        "signup_date": pd.NaT,
        "owner_id": np.full(n_customers, -1, np.int64),
    })
    return Shape("business", interactions.sort_values("occurred_at", kind="stable").reset_index(drop=True),
                 products, customers)


def truncated(shape: Shape, days: int, name: str) -> Shape:
    """Only the last ``days`` days of history up to as_of."""
    keep = shape.interactions["occurred_at"] >= shape.as_of - pd.Timedelta(days=days - 1)
    return replace(shape, name=name, interactions=shape.interactions[keep].reset_index(drop=True))


def no_catalogue(shape: Shape) -> Shape:
    return replace(shape, name="no_catalogue", interactions=shape.interactions.assign(product_id=-1),
                   products=shape.products.iloc[0:0])


def no_amounts(shape: Shape) -> Shape:
    return replace(shape, name="no_amounts", interactions=shape.interactions.assign(amount=0.0))


def with_refunds(shape: Shape, share=0.08, seed=1) -> Shape:
    """A seeded ``share`` of purchases refunded in full 1-14 days later (before as_of)."""
    rng = np.random.default_rng(seed)
    buys = shape.interactions
    picked = buys[rng.random(len(buys)) < share].copy()
    picked["occurred_at"] += pd.to_timedelta(rng.integers(1, 15, len(picked)), unit="D")
    picked = picked[picked["occurred_at"] < shape.as_of + pd.Timedelta(days=1)]
    picked["type"] = "refund"
    picked["order_ref"] = "r" + picked["order_ref"]
    frame = pd.concat([buys, picked], ignore_index=True).sort_values("occurred_at", kind="stable")
    return replace(shape, name="refunds", interactions=frame.reset_index(drop=True))


def one_time_buyers(shape: Shape) -> Shape:
    """Every customer kept with their first purchase day only: nobody has ever bought twice."""
    t = shape.interactions
    day = t["occurred_at"].dt.normalize()
    first = day.groupby(t["customer_id"]).transform("min")
    return replace(shape, name="one_time_buyers", interactions=t[day == first].reset_index(drop=True))


def few_customers(shape: Shape, n=20, seed=2) -> Shape:
    ids = np.random.default_rng(seed).choice(shape.customers["customer_id"], n, replace=False)
    return replace(shape, name=f"customers_{n}",
                   interactions=shape.interactions[shape.interactions["customer_id"].isin(ids)].reset_index(drop=True),
                   customers=shape.customers[shape.customers["customer_id"].isin(ids)].reset_index(drop=True))


def one_category(shape: Shape) -> Shape:
    return replace(shape, name="one_category", products=shape.products.assign(category="Everything"))


def ratings_like(shape: Shape) -> Shape:
    """Each (customer, product) pair once, at its first purchase: no product is ever re-bought."""
    t = shape.interactions
    return replace(shape, name="ratings_like",
                   interactions=t.drop_duplicates(["customer_id", "product_id"]).reset_index(drop=True))


def seasonal_peak(shape: Shape, first_day="2024-11-04", days=21) -> Shape:
    """A wholesale rush inside the history: every purchase of three weeks happens three times."""
    t = shape.interactions
    start = pd.Timestamp(first_day)
    rush = t[(t["occurred_at"] >= start) & (t["occurred_at"] < start + pd.Timedelta(days=days))]
    copies = [rush.assign(order_ref=rush["order_ref"] + f"-peak{k}") for k in (1, 2)]
    frame = pd.concat([t, *copies], ignore_index=True).sort_values("occurred_at", kind="stable")
    return replace(shape, name="seasonal_peak", interactions=frame.reset_index(drop=True))


def huge_orders(shape: Shape, share=0.01, factor=50, seed=3) -> Shape:
    """A seeded ``share`` of customers order ``factor`` times the quantity (wholesale buyers)."""
    t = shape.interactions
    ids = shape.customers["customer_id"].to_numpy()
    big = np.random.default_rng(seed).choice(ids, max(1, int(share * len(ids))), replace=False)
    mask = t["customer_id"].isin(big)
    t = t.assign(quantity=np.where(mask, t["quantity"] * factor, t["quantity"]),
                 amount=np.where(mask, t["amount"] * factor, t["amount"]))
    return replace(shape, name="huge_orders", interactions=t)


def matrix(seed=0, n_customers=400) -> dict:
    """name -> Shape for every shape of the issue's matrix (built from one planted business)."""
    base = business(n_customers=n_customers, seed=seed)
    shapes = [
        base,
        truncated(base, 80, "shorter_than_horizon"),
        truncated(base, 135, "between_one_and_two_horizons"),
        truncated(base, 14, "two_weeks"),
        no_catalogue(base),
        no_amounts(base),
        with_refunds(base),
        one_time_buyers(base),
        few_customers(base),
        one_category(base),
        ratings_like(base),
        seasonal_peak(base),
        huge_orders(base),
    ]
    return {s.name: s for s in shapes}
