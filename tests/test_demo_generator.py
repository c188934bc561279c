"""Tests for the synthetic demo business generator (crm/demo.py). No database needed."""

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from crm.demo import (
    CUSTOMER_COLUMNS,
    INTERACTION_COLUMNS,
    INTERACTION_TYPES,
    KINDS,
    PRODUCT_COLUMNS,
    generate,
)

END = dt.date(2025, 6, 30)
DAYS = 730


@pytest.fixture(scope="module")
def data():
    return generate(n_customers=4000, seed=7, end=END, days=DAYS)


@pytest.fixture(scope="module")
def orders(data):
    """One row per order: customer, kind, timestamp, number of lines."""
    it = data["interactions"]
    pur = it[it["type"] == "purchase"]
    o = (
        pur.groupby("order_ref", observed=True)
        .agg(customer=("customer_external_id", "first"), ts=("occurred_at", "min"), lines=("product_sku", "size"))
        .reset_index()
    )
    o["customer"] = o["customer"].astype(str)
    o["ts"] = pd.to_datetime(o["ts"])
    kinds = data["customers"].set_index("external_id")["demo_kind"]
    o["kind"] = o["customer"].map(kinds)
    return o


def test_columns_exact(data):
    assert list(data) == ["customers", "products", "interactions"]
    assert list(data["customers"].columns) == CUSTOMER_COLUMNS
    assert list(data["products"].columns) == PRODUCT_COLUMNS
    assert list(data["interactions"].columns) == INTERACTION_COLUMNS


def test_deterministic_for_seed():
    a = generate(n_customers=300, seed=3, end=END)
    b = generate(n_customers=300, seed=3, end=END)
    c = generate(n_customers=300, seed=4, end=END)
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k])
    assert not a["interactions"]["occurred_at"].equals(c["interactions"]["occurred_at"])


def test_csv_roundtrip_formats(data, tmp_path):
    it = data["interactions"].head(5000)
    path = tmp_path / "interactions.csv"
    it.to_csv(path, index=False)
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(back.columns) == INTERACTION_COLUMNS
    assert back["occurred_at"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d").all()
    assert back["type"].isin(INTERACTION_TYPES).all()
    # amounts have at most 2 decimals
    assert back["amount"].str.fullmatch(r"\d+(\.\d{1,2})?").all()
    cust = data["customers"]
    assert cust["signup_date"].str.fullmatch(r"\d{4}-\d\d-\d\d").all()
    assert cust["external_id"].str.fullmatch(r"C\d{6,}").all()
    assert cust["email"].str.fullmatch(r"[a-z0-9.]+@[a-z0-9.-]+").all()


def test_keys_unique(data):
    cust, prod, it = data["customers"], data["products"], data["interactions"]
    assert cust["external_id"].is_unique
    assert cust["email"].is_unique
    assert prod["sku"].is_unique
    assert it["external_id"].is_unique
    # one order belongs to one customer and has no duplicated sku
    pur = it[it["type"] == "purchase"]
    assert (pur.groupby("order_ref", observed=True)["customer_external_id"].nunique() == 1).all()
    assert not pur.duplicated(["order_ref", "product_sku"]).any()


def test_references_exist(data):
    cust, prod, it = data["customers"], data["products"], data["interactions"]
    assert set(it["customer_external_id"].astype(str)) <= set(cust["external_id"])
    skus = it["product_sku"].dropna().astype(str)
    assert set(skus) <= set(prod["sku"])
    # purchases / refunds / views always name a product; emails / calls / meetings / notes never do
    typ = it["type"].astype(str)
    assert it.loc[typ.isin(["purchase", "refund", "view"]), "product_sku"].notna().all()
    assert it.loc[typ.isin(["email", "call", "meeting", "note"]), "product_sku"].isna().all()
    assert it.loc[typ.isin(["purchase", "refund"]), "order_ref"].notna().all()
    assert it.loc[~typ.isin(["purchase", "refund"]), "order_ref"].isna().all()
    assert set(cust["owner"]) <= {"alice", "bob", "carol", ""}
    owned = (cust["owner"] != "").mean()
    assert 0.6 < owned < 0.95


def test_products_catalogue(data):
    prod = data["products"]
    assert len(prod) == 200  # max(50, min(5000, 4000 // 20))
    assert 8 <= prod["category"].nunique() <= 15
    assert (prod["price"] >= 0).all()
    assert np.allclose(prod["price"], prod["price"].round(2))
    assert set(prod["active"]) == {"true", "false"}
    assert 0.005 < (prod["active"] == "false").mean() < 0.15
    assert prod["tags"].str.fullmatch(r"[a-z0-9-]+(;[a-z0-9-]+)*").all()
    assert prod["description"].str.len().min() > 20
    # prices differ by category (log-normal per category)
    med = prod.groupby("category")["price"].median()
    assert med["Printers"] > 5 * med["Snacks"]


def test_amounts_consistent(data):
    it, prod = data["interactions"], data["products"]
    assert (it["amount"] >= 0).all()
    assert (it["quantity"] >= 0).all()
    assert np.allclose(it["amount"], it["amount"].round(2))
    pur = it[it["type"] == "purchase"]
    price = pur["product_sku"].astype(str).map(prod.set_index("sku")["price"])
    gross = price * pur["quantity"]
    assert (pur["quantity"] >= 1).all()
    assert (pur["amount"] <= gross + 0.005).all()
    assert (pur["amount"] >= gross * 0.59 - 0.01).all()  # discounts are at most 40%
    # non-commercial interactions carry no money
    assert (it.loc[~it["type"].isin(["purchase", "refund"]), "amount"] == 0).all()


def test_refunds_refer_to_earlier_purchase(data):
    it = data["interactions"]
    key = ["customer_external_id", "order_ref", "product_sku"]
    pur = it[it["type"] == "purchase"][key + ["occurred_at", "amount", "quantity"]]
    ref = it[it["type"] == "refund"][key + ["occurred_at", "amount", "quantity"]]
    assert len(ref) > 0
    m = ref.merge(pur, on=key, how="left", suffixes=("_r", "_p"))
    assert len(m) == len(ref)
    assert m["amount_p"].notna().all()
    assert (m["occurred_at_r"] > m["occurred_at_p"]).all()
    assert (m["amount_r"] <= m["amount_p"]).all()
    assert (m["amount_r"] > 0).all()
    assert (m["quantity_r"] <= m["quantity_p"]).all()


def test_time_bounds(data):
    it, cust = data["interactions"], data["customers"]
    ts = pd.to_datetime(it["occurred_at"])
    start = pd.Timestamp(END - dt.timedelta(days=DAYS - 1))
    assert ts.min() >= start
    assert ts.max() < pd.Timestamp(END + dt.timedelta(days=1))
    signup = pd.to_datetime(it["customer_external_id"].astype(str).map(cust.set_index("external_id")["signup_date"]))
    assert (ts >= signup).all()
    # tenure varies: signups spread over the window
    su = pd.to_datetime(cust["signup_date"])
    assert (su.max() - su.min()).days > DAYS * 0.8


def test_volume_and_kinds(data):
    cust, it = data["customers"], data["interactions"]
    assert set(cust["demo_kind"]) == set(KINDS)
    per_customer = len(it) / len(cust)
    assert 12 < per_customer < 35
    assert set(it["type"].astype(str)) == set(INTERACTION_TYPES)


def test_refund_prone_refund_more(orders, data):
    it = data["interactions"]
    refunded = set(it.loc[it["type"] == "refund", "order_ref"].astype(str))
    o = orders.assign(refunded=orders["order_ref"].astype(str).isin(refunded))
    share = o.groupby("kind")["refunded"].mean()
    others = o.loc[o["kind"] != "refund_prone", "refunded"].mean()
    assert share["refund_prone"] > 0.15
    assert others < 0.05
    assert share["refund_prone"] > 5 * others


def test_loyal_frequent_and_regular(orders):
    counts = orders.groupby("customer").size()
    kind = orders.groupby("customer")["kind"].first()
    mean_orders = counts.groupby(kind).mean()
    assert mean_orders["one_off"] == 1.0
    assert mean_orders["loyal"] > 5 * mean_orders["one_off"]

    o = orders.sort_values(["customer", "ts"])
    gaps = o.groupby("customer")["ts"].diff().dt.total_seconds() / 86400
    o = o.assign(gap=gaps).dropna(subset=["gap"])
    stats = o.groupby("customer")["gap"].agg(["mean", "std", "size"])
    stats = stats[stats["size"] >= 4]
    cv = (stats["std"] / stats["mean"]).groupby(kind.reindex(stats.index)).median()
    assert cv["loyal"] < 0.6
    assert cv["loyal"] < cv["lapsing"] - 0.15
    assert cv["loyal"] < cv["big_occasional"]


def test_lapsing_stop_earlier(orders):
    last = orders.groupby("customer").agg(last=("ts", "max"), kind=("kind", "first"))
    end = pd.Timestamp(END)
    days_since = (end - last["last"]).dt.days.groupby(last["kind"]).mean()
    assert days_since["lapsing"] > 2 * days_since["loyal"]
    assert days_since["lapsing"] > 90


def test_big_occasional_and_bargain_baskets(data, orders):
    it = data["interactions"]
    pur = it[it["type"] == "purchase"]
    aov = pur.groupby("order_ref", observed=True)["amount"].sum()
    o = orders.assign(aov=orders["order_ref"].map(aov))
    by_kind = o.groupby("kind")["aov"].mean()
    assert by_kind["big_occasional"] > 3 * by_kind["loyal"]
    assert by_kind["bargain"] < by_kind["loyal"]


def test_complements_cooccur(data):
    it, prod = data["interactions"], data["products"]
    pairs = prod.attrs["complements"]
    assert len(pairs) > 5
    pur = it[it["type"] == "purchase"]
    n_orders = pur["order_ref"].nunique()
    a_col = pur["product_sku"].astype(str)
    order_of = pur["order_ref"].astype(str)
    n_sku = a_col.value_counts()
    baskets = pd.DataFrame({"o": order_of, "s": a_col})
    pair_df = pd.DataFrame(pairs, columns=["a", "b"])
    co = baskets.merge(pair_df, left_on="s", right_on="a").merge(baskets, left_on=["o", "b"], right_on=["o", "s"])
    observed = len(co)
    expected = (pair_df["a"].map(n_sku).fillna(0) * pair_df["b"].map(n_sku).fillna(0)).sum() / n_orders
    assert observed > 20
    assert observed > 10 * expected


def test_seasonality(data):
    it = data["interactions"]
    ts = pd.to_datetime(it.loc[it["type"] == "purchase", "occurred_at"])
    # restrict to the last full year so customer growth does not dominate
    last_year = ts[ts >= pd.Timestamp(END) - pd.Timedelta(days=365)]
    by_month = last_year.dt.month.value_counts()
    assert by_month[[11, 12]].mean() > 1.1 * by_month[[9, 10]].mean()
    dow = ts.dt.day_of_week.value_counts()
    assert dow[5] > dow[6]  # Saturday busier than Sunday


def test_views_precede_some_purchases(data):
    it = data["interactions"]
    v = it[it["type"] == "view"][["customer_external_id", "product_sku", "occurred_at"]]
    p = it[it["type"] == "purchase"][["customer_external_id", "product_sku", "occurred_at"]]
    m = p.merge(v, on=["customer_external_id", "product_sku"], suffixes=("_p", "_v"))
    before = m[m["occurred_at_v"] <= m["occurred_at_p"]]
    assert len(before) > 0.1 * len(p)


def test_small_and_edge_configs():
    d = generate(n_customers=1, seed=0, end=END)
    assert len(d["customers"]) == 1
    d = generate(n_customers=60, seed=1, end=END, n_products=5, sales_reps=(), days=30)
    assert len(d["products"]) == 5
    assert (d["customers"]["owner"] == "").all()
    ts = pd.to_datetime(d["interactions"]["occurred_at"])
    assert ts.min() >= pd.Timestamp(END - dt.timedelta(days=29))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", generate(n_customers=5, seed=2)["customers"]["signup_date"][0])
