"""Segmentation on every shape of data a new company may bring: each gets segments or a reason.

Each test builds its frames here (planted groups over a history of a chosen length, then the
shape: no catalogue, no amounts, one category...) and asserts the published outcome (algorithm,
basis, reason) and, where a structure is planted, that the segments recover it. The last tests
go through the database and ``ml.services.run_now``.
"""
from __future__ import annotations

from datetime import UTC, date
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from ml.pipelines.segmentation import PROSPECTS, UNUSUAL, CustomerSegmenter, NothingToSegment

AS_OF = pd.Timestamp("2024-12-31")
CATEGORIES = ("Electronics", "Garden", "Books", "Toys", "Food")

# Planted groups: days between orders while active, the part of the history (oldest first,
# as shares of it) the group buys in, typical order value, favourite category.
GROUPS = {
    "regulars": dict(gap=9.0, active=(0.0, 1.0), value=120.0, category=0),
    "occasional": dict(gap=45.0, active=(0.0, 1.0), value=30.0, category=1),
    "lapsed": dict(gap=12.0, active=(0.0, 0.35), value=50.0, category=2),
}
FILLERS = ("(none)", "(other)", "nan", "None")


def make_shop(n_customers=600, history_days=365, seed=0, amounts=True, catalogue=True,
              categories=CATEGORIES, refunds=True, prospects=0.1, peak=None, as_of=AS_OF):
    """(interactions, products, customers, group): the groups of GROUPS over ``history_days``
    days ending on ``as_of``; ``group`` maps customer_id to its group ("prospects": no purchase).

    ``peak`` = (days, factor): the groups still buying order ``factor`` times as often in the
    last ``days`` days. ``amounts=False``: every amount 0 and no product has a price.
    ``catalogue=False``: purchases carry no product and the product frame is empty.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n_customers + 1, dtype=np.int64)
    names = np.array([*GROUPS, "prospects"])
    share = (1 - prospects) / len(GROUPS)
    group = names[rng.choice(len(names), size=n_customers, p=[share] * len(GROUPS) + [prospects])]
    n_products = 10 * len(categories)
    products = pd.DataFrame({
        "product_id": np.arange(n_products, dtype=np.int64),
        "sku": [f"SKU{i}" for i in range(n_products)],
        "name": [f"Product {i}" for i in range(n_products)],
        "category": [categories[i % len(categories)] for i in range(n_products)],
        "description": "", "tags": "", "active": True,
        "price": np.round(rng.uniform(5, 200, n_products), 2) if amounts else np.nan})
    start = as_of + pd.Timedelta(days=1) - pd.Timedelta(days=history_days)
    parts = []
    for gname, spec in GROUPS.items():
        members = ids[group == gname]
        lo, hi = spec["active"]
        days = history_days * (hi - lo)
        n_orders = np.maximum(rng.poisson(days / spec["gap"], len(members)), 1)
        cust = np.repeat(members, n_orders)
        offset = history_days * lo + rng.uniform(0, days, len(cust))
        if peak is not None and hi == 1.0:
            extra = np.repeat(members, rng.poisson(peak[0] / spec["gap"] * (peak[1] - 1),
                                                   len(members)))
            cust = np.r_[cust, extra]
            offset = np.r_[offset, history_days - rng.uniform(0, peak[0], len(extra))]
        cat = np.where(rng.random(len(cust)) < 0.85, spec["category"] % len(categories),
                       rng.integers(0, len(categories), len(cust)))
        pid = cat + len(categories) * rng.integers(0, 10, len(cust))
        amount = np.round(spec["value"] * rng.lognormal(0, 0.3, len(cust)), 2)
        parts.append(pd.DataFrame({
            "customer_id": cust, "product_id": pid, "type": "purchase",
            "occurred_at": start + pd.to_timedelta(offset, unit="D"), "quantity": 1,
            "amount": amount}))
        if refunds:
            refunded = rng.random(len(cust)) < 0.05
            parts.append(pd.DataFrame({
                "customer_id": cust[refunded], "product_id": pid[refunded], "type": "refund",
                "occurred_at": start + pd.to_timedelta(
                    np.minimum(offset[refunded] + 2, history_days - 0.01), unit="D"),
                "quantity": 1, "amount": amount[refunded]}))
    touch = np.repeat(ids, rng.poisson(2.0, n_customers))
    parts.append(pd.DataFrame({
        "customer_id": touch, "product_id": -1,
        "type": np.array(["view", "email", "call"])[rng.integers(0, 3, len(touch))],
        "occurred_at": start + pd.to_timedelta(rng.uniform(0, history_days, len(touch)), unit="D"),
        "quantity": 1, "amount": 0.0}))
    interactions = pd.concat(parts, ignore_index=True)
    interactions["occurred_at"] = interactions["occurred_at"].astype("datetime64[ns]").dt.floor("s")
    interactions["order_ref"] = "o" + pd.Series(np.arange(len(interactions))).astype(str)
    if not amounts:
        interactions["amount"] = 0.0
    if not catalogue:
        interactions["product_id"] = -1
        products = products.iloc[:0]
    customers = pd.DataFrame({
        "customer_id": ids, "external_id": ids.astype(str),
        "signup_date": np.full(n_customers, start.to_datetime64(), dtype="datetime64[ns]"),
        "owner_id": np.int64(-1)})
    return interactions, products, customers, pd.Series(group, index=ids)


def fit(frames, horizon_days=90, algorithm="auto"):
    interactions, products, customers, _ = frames
    return CustomerSegmenter(algorithm=algorithm, horizon_days=horizon_days, random_state=0).fit(
        interactions, products, customers, AS_OF)


def recovery(model, group, customers=None):
    """(purity, largest share) over the planted buyers (or ``customers``): purity is the share
    of customers whose segment's majority is their own group (1 = no segment mixes groups);
    largest share is the biggest segment's share of them (1 = everyone in one segment)."""
    who = group[group != "prospects"].index if customers is None else customers
    keys = model.assignments_.set_index("customer_id").loc[who, "segment_key"]
    table = pd.crosstab(keys, group[who])
    return (float(table.max(axis=1).sum() / table.values.sum()),
            float(table.sum(axis=1).max() / table.values.sum()))


def assert_named_plainly(model):
    """Every segment that holds someone has a name and a profile without filler words."""
    segs = model.segments_[model.segments_["size"] > 0]
    assert segs["name"].is_unique
    for text in [*segs["name"], *segs["profile"]]:
        assert text and not any(f in text for f in FILLERS), text
    assert model.assignments_["name"].ne("").all()


def assert_segment_or_reason(model, frames):
    """Everyone known at as_of is in exactly one segment; the outcome says what was published."""
    _, _, customers, _ = frames
    assert set(customers["customer_id"]) <= set(model.assignments_["customer_id"])
    assert model.outcome_["basis"] in ("model", "baseline", "not validated")
    assert model.outcome_["summary"].startswith(model.outcome_["basis"] + ": " + model.chosen_)


# ---------------------------------------------------------------------- history length
def test_shapes_a_year_of_planted_groups_is_recovered_by_a_validated_model():
    frames = make_shop()
    model = fit(frames)
    assert (model.chosen_, model.basis_) == ("kmeans", "model")
    assert model.outcome_["summary"] == "model: kmeans (4 segments), validated on 3 windows of 90 days"
    assert recovery(model, frames[3]) == (1.0, pytest.approx(0.35, abs=0.05))
    assert_named_plainly(model)
    assert_segment_or_reason(model, frames)


def test_shapes_history_shorter_than_one_horizon_is_validated_on_shorter_windows():
    frames = make_shop(history_days=60)
    model = fit(frames, horizon_days=90)
    backtest = model.backtest_
    # 60 days: windows of a third of the history (20 days), three of them rolling by 10.
    assert (backtest["window_days"], len(backtest["origins"])) == (20, 3)
    assert [o["cut"] for o in backtest["origins"]] == ["2024-12-11", "2024-12-01", "2024-11-21"]
    assert (model.chosen_, model.basis_) == ("kmeans", "model")
    assert "validated on 3 windows of 20 days (a third of the history)" in model.outcome_["summary"]
    # Two months hold too few orders of the occasional and the lapsed customers to tell them
    # apart, but the regulars stand out.
    group = frames[3]
    regulars = model.assignments_.set_index("customer_id").loc[group[group == "regulars"].index]
    assert regulars["segment_key"].value_counts(normalize=True).iloc[0] > 0.9
    assert_named_plainly(model)


def test_shapes_history_between_one_and_two_horizons_is_validated_and_recovers_the_groups():
    frames = make_shop(history_days=150)
    model = fit(frames, horizon_days=90)
    assert (model.backtest_["window_days"], len(model.backtest_["origins"])) == (50, 3)
    # K-means separates the next window's behaviour better than RFM on average over the three
    # windows, by more than the spread between them: the model is taken over the baseline.
    choice = model.backtest_["choice"]["segments"]
    assert choice["chosen"] == choice["best"] == "kmeans"
    assert choice["mean"]["kmeans"] - choice["mean"]["rfm"] > choice["spread"]["rfm"]
    assert (model.chosen_, model.basis_) == ("kmeans", "model")
    assert model.outcome_["summary"].startswith("model: kmeans (")
    purity, largest = recovery(model, frames[3])
    assert purity > 0.9 and largest < 0.5
    assert_named_plainly(model)


def test_shapes_two_weeks_of_history_publish_rfm_not_validated_with_the_reason():
    frames = make_shop(history_days=15)
    model = fit(frames, horizon_days=90)
    assert (model.chosen_, model.basis_) == ("rfm", "not validated")
    assert model.backtest_["origins"] == [] and model.backtest_["choice"] == {}
    assert model.outcome_["summary"].startswith("not validated: rfm (")
    assert "15 days of history" in model.outcome_["summary"]
    assert_named_plainly(model)
    assert_segment_or_reason(model, frames)


# ---------------------------------------------------------------------- what the rows carry
def test_shapes_no_product_catalogue_still_segments_by_behaviour():
    frames = make_shop(catalogue=False)
    model = fit(frames)
    assert (model.chosen_, model.basis_) == ("rfm", "baseline")
    assert all(f.get("top_category", "") == "" for f in model.segments_["figures"])
    assert "mostly buy" not in " ".join(model.segments_["profile"])
    purity, largest = recovery(model, frames[3])
    assert purity > 0.9 and largest < 0.5
    # K-means, had it been asked, also recovers the groups from behaviour alone.
    kmeans = fit(frames, algorithm="kmeans")
    assert recovery(kmeans, frames[3])[0] > 0.8
    assert_named_plainly(model)
    assert_named_plainly(kmeans)


def test_shapes_no_amounts_segments_without_spend_and_says_so():
    frames = make_shop(amounts=False)
    model = fit(frames)
    assert model.money_ is False
    assert "spend" not in " ".join(model.model_["encoding"]["columns"])
    assert (model.chosen_, model.basis_) == ("rfm", "baseline")
    assert "spend left out (the purchases carry no amounts)" in model.outcome_["summary"]
    names, profiles = " ".join(model.segments_["name"]), " ".join(model.segments_["profile"])
    for word in ("spender", "Big-ticket", "value", "spend"):
        assert word not in names
    assert "spend" not in profiles and "refund" not in profiles
    assert "of purchases)" in profiles  # the category mix counts purchase lines
    assert (model.assignments_["rfm_score"] % 10 == 0).all()  # no M digit
    assert all(f.get("median_spend") is None for f in model.segments_["figures"])
    # RFM on recency and frequency still orders the planted groups.
    a = model.assignments_.set_index("customer_id")
    group = frames[3]
    assert a.loc[group[group == "regulars"].index, "name"].isin(
        ["Champions", "Loyal customers", "Can't lose them"]).mean() > 0.9
    assert a.loc[group[group == "lapsed"].index, "name"].isin(
        ["At risk", "Hibernating", "Lost"]).mean() > 0.9
    assert_named_plainly(model)


def test_shapes_no_amounts_with_a_priced_catalogue_values_purchases_at_the_price():
    interactions, products, customers, group = make_shop()
    interactions = interactions.assign(amount=0.0)
    model = fit((interactions, products, customers, group))
    assert model.money_ is True and "spend" in model.model_["encoding"]["columns"]


def test_shapes_no_refunds_names_nobody_refund_prone():
    frames = make_shop(refunds=False)
    model = fit(frames)
    assert (model.chosen_, model.basis_) == ("kmeans", "model")
    assert "Refund" not in " ".join(model.segments_["name"])
    assert recovery(model, frames[3])[0] == 1.0
    assert_named_plainly(model)


def test_shapes_all_one_time_buyers_get_segments_without_loyalty_names():
    interactions, products, customers, group = make_shop()
    purchases = interactions[interactions["type"] == "purchase"]
    first = purchases.loc[purchases.groupby("customer_id")["occurred_at"].idxmin()]
    once = pd.concat([first, interactions[~interactions["type"].isin(["purchase", "refund"])]],
                     ignore_index=True)
    frames = (once, products, customers, group)
    model = fit(frames)
    assert model.backtest_["validated"] and len(model.backtest_["origins"]) == 3
    assert (model.chosen_, model.basis_) == ("dbscan", "model")
    names = " ".join(model.segments_["name"])
    assert "Loyal" not in names and "Champions" not in names and "regulars" not in names
    assert (model.features_["orders"] <= 1).all()
    assert_named_plainly(model)
    assert_segment_or_reason(model, frames)


def test_shapes_twenty_customers_publish_rfm_not_validated():
    frames = make_shop(n_customers=20)
    model = fit(frames)
    assert (model.chosen_, model.basis_) == ("rfm", "not validated")
    assert "fewer than the 50 needed" in model.outcome_["summary"]
    assert all(o["scores"]["rfm"]["adjusted eta squared"] is None
               for o in model.backtest_["origins"])
    assert len(model.assignments_) == 20
    assert_named_plainly(model)


def test_shapes_one_category_is_not_a_distinction():
    frames = make_shop(categories=("Books",))
    model = fit(frames)
    assert (model.chosen_, model.basis_) == ("rfm", "baseline")
    purity, largest = recovery(model, frames[3])
    assert purity > 0.9 and largest < 0.5
    kmeans = fit(frames, algorithm="kmeans")
    assert recovery(kmeans, frames[3])[0] > 0.9
    for m in (model, kmeans):
        assert "Books" not in " ".join(m.segments_["name"]) + " ".join(m.segments_["profile"])
        assert_named_plainly(m)


def test_shapes_ratings_like_data_each_product_once_per_customer():
    rng = np.random.default_rng(3)
    n, n_items = 400, 60
    per_customer = rng.integers(3, 30, n)
    cust = np.repeat(np.arange(1, n + 1), per_customer)
    items = np.concatenate([rng.choice(n_items, size=k, replace=False) for k in per_customer])
    interactions = pd.DataFrame({
        "customer_id": cust, "product_id": items, "type": "purchase",
        "occurred_at": (AS_OF - pd.to_timedelta(rng.uniform(0, 365, len(cust)), unit="D")).floor("s"),
        "quantity": 1, "amount": np.round(rng.uniform(5, 50, len(cust)), 2)})
    interactions["order_ref"] = "r" + interactions.index.astype(str)
    products = pd.DataFrame({"product_id": np.arange(n_items), "sku": [f"s{i}" for i in range(n_items)],
                             "name": "", "category": [("A", "B", "C")[i % 3] for i in range(n_items)],
                             "description": "", "tags": "", "active": True, "price": 10.0})
    customers = pd.DataFrame({"customer_id": np.arange(1, n + 1), "external_id": "x",
                              "signup_date": pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]"),
                              "owner_id": -1})
    model = CustomerSegmenter().fit(interactions, products, customers, AS_OF)
    assert (model.chosen_, model.basis_) == ("rfm", "baseline")
    # Frequency is the number of items rated: the heaviest raters are the best RFM groups.
    a = model.assignments_.set_index("customer_id")
    heavy = model.features_["orders"] >= 25
    assert a.loc[heavy[heavy].index, "rfm_score"].floordiv(10).mod(10).ge(4).all()
    assert (a["name"] != PROSPECTS).all()
    assert_named_plainly(model)


def test_shapes_a_seasonal_peak_in_the_last_window_keeps_the_groups():
    frames = make_shop(peak=(30, 4.0))
    model = fit(frames)
    assert (model.chosen_, model.basis_) == ("kmeans", "model")
    purity, largest = recovery(model, frames[3])
    assert purity > 0.95 and largest < 0.5
    assert_named_plainly(model)


def with_huge_orders(frames, n=5, factor=5000):
    """``frames`` where ``n`` occasional customers' orders are ``factor`` times as large."""
    interactions, products, customers, group = frames
    whales = group[group == "occasional"].index[:n]
    huge = interactions["customer_id"].isin(whales) & (interactions["type"] == "purchase")
    interactions = interactions.assign(amount=np.where(huge, interactions["amount"] * factor,
                                                       interactions["amount"]))
    return (interactions, products, customers, group), whales


@pytest.mark.parametrize("algorithm", ["auto", "kmeans"])
def test_shapes_a_few_huge_orders_do_not_lump_everyone_else_together(algorithm):
    frames, whales = with_huge_orders(make_shop())
    model = fit(frames, algorithm=algorithm)
    group = frames[3]
    others = group[(group != "prospects") & ~group.index.isin(whales)].index
    purity, largest = recovery(model, group, others)
    assert purity > 0.9 and largest < 0.5
    if algorithm == "kmeans":  # fitted without the far-out customers, then all assigned
        assert model.params_["far_out_left_out"] == len(whales)
        assert model.params_["k"] >= 3
    assert_named_plainly(model)


def test_shapes_dbscan_puts_huge_orders_into_unusual_and_keeps_the_regulars():
    frames, whales = with_huge_orders(make_shop())
    model = fit(frames, algorithm="dbscan")
    group = frames[3]
    a = model.assignments_.set_index("customer_id")
    assert (a.loc[whales, "name"] == UNUSUAL).all()
    regulars = a.loc[group[group == "regulars"].index, "segment_key"]
    assert regulars.value_counts(normalize=True).iloc[0] > 0.9


# ---------------------------------------------------------------------- the as-of day
def test_shapes_the_whole_as_of_day_counts_and_nothing_after_it():
    interactions, products, customers, group = make_shop()
    late = pd.DataFrame({
        "customer_id": [9001, 9002], "product_id": [0, 0], "type": "purchase",
        "occurred_at": [AS_OF + pd.Timedelta(hours=23, minutes=59, seconds=59),
                        AS_OF + pd.Timedelta(days=1)],
        "quantity": 1, "amount": [40.0, 40.0], "order_ref": ["late1", "late2"]})
    signed_up = customers.iloc[:2].assign(customer_id=[9001, 9002], external_id=["a", "b"])
    model = fit((pd.concat([interactions, late], ignore_index=True), products,
                 pd.concat([customers, signed_up], ignore_index=True), group))
    f = model.features_
    assert (f.loc[9001, "orders"], f.loc[9001, "recency_days"]) == (1, 0)
    assert f.loc[9002, "orders"] == 0
    a = model.assignments_.set_index("customer_id")
    assert a.loc[9001, "name"] != PROSPECTS and a.loc[9002, "name"] == PROSPECTS


# ---------------------------------------------------------------------- nothing to segment
def test_shapes_customers_without_any_purchase_are_all_prospects():
    interactions, products, customers, _ = make_shop()
    touches = interactions[~interactions["type"].isin(["purchase", "refund"])]
    model = CustomerSegmenter().fit(touches, products, customers, AS_OF)
    assert (model.assignments_["name"] == PROSPECTS).all()
    assert (model.chosen_, model.basis_) == ("rfm", "not validated")
    assert "no history on or before the as-of date" in model.outcome_["summary"]


def test_shapes_no_customers_and_no_interactions_is_refused_with_the_reason():
    interactions, products, customers, _ = make_shop()
    with pytest.raises(NothingToSegment, match="nobody to segment"):
        CustomerSegmenter().fit(interactions.iloc[:0], products, customers.iloc[:0], AS_OF)


# ---------------------------------------------------------------------- through the database
def store(frames, tz=UTC):
    """Write the frames as Customer / Product / Interaction rows (naive times read in ``tz``);
    returns frame customer_id -> database id."""
    from crm.models import Customer, Interaction, Product

    interactions, products, customers, _ = frames
    made = Customer.objects.bulk_create([
        Customer(external_id=f"C{cid}", signup_date=pd.Timestamp(s).date() if pd.notna(s) else None)
        for cid, s in zip(customers["customer_id"], customers["signup_date"])])
    customer_pk = dict(zip(customers["customer_id"], (c.pk for c in made)))
    made = Product.objects.bulk_create([
        Product(sku=r.sku, name=r.name, category=r.category,
                price=None if pd.isna(r.price) else Decimal(str(r.price)))
        for r in products.itertuples()])
    product_pk = dict(zip(products["product_id"], (p.pk for p in made)))
    Interaction.objects.bulk_create([
        Interaction(external_id=f"I{i}", customer_id=customer_pk[r.customer_id], type=r.type,
                    occurred_at=r.occurred_at.to_pydatetime().replace(tzinfo=tz),
                    product_id=product_pk.get(r.product_id), quantity=r.quantity,
                    amount=Decimal(str(round(r.amount, 2))) if r.amount else None,
                    order_ref=r.order_ref if r.type == "purchase" else "")
        for i, r in enumerate(interactions.itertuples())], batch_size=2000)
    return customer_pk


@pytest.mark.django_db
def test_run_now_segmentation_publishes_the_choice_with_its_backtest():
    from ml import services
    from ml.models import CustomerSegment

    frames = make_shop(n_customers=300, history_days=200)
    store(frames)

    run = services.run_now("segmentation", as_of=date(2024, 12, 31), horizon_days=60)

    assert run.status == "succeeded" and run.is_published, run.error
    outcome, backtest = run.metrics["outcome"], run.metrics["backtest"]
    assert outcome["basis"] == "model" and run.chosen_algorithm == "kmeans"
    assert outcome["summary"].startswith("model: kmeans (")
    assert "validated on 3 windows of 60 days" in outcome["summary"]
    assert [o["cut"] for o in backtest["origins"]] == ["2024-11-01", "2024-10-02", "2024-09-02"]
    assert all(o["customers"] == 300 and set(o["scores"]) == {"rfm", "kmeans", "dbscan"}
               for o in backtest["origins"])
    assert backtest["choice"]["segments"]["chosen"] == "kmeans"
    assert set(run.metrics["comparison"]) == {"rfm", "kmeans", "dbscan"}
    assert CustomerSegment.objects.filter(run=run).count() == 300


@pytest.mark.django_db
def test_run_now_segmentation_on_two_weeks_of_history_publishes_rfm_not_validated():
    from ml import services
    from ml.models import Segment

    store(make_shop(n_customers=200, history_days=15))

    run = services.run_now("segmentation", as_of=date(2024, 12, 31), horizon_days=90)

    assert run.status == "succeeded" and run.is_published, run.error
    assert run.metrics["outcome"]["basis"] == "not validated" and run.chosen_algorithm == "rfm"
    assert "15 days of history" in run.metrics["outcome"]["summary"]
    assert run.metrics["backtest"]["origins"] == []
    names = list(Segment.objects.filter(run=run, size__gt=0).values_list("name", flat=True))
    assert "Champions" in names and not any("(none)" in n for n in names)


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/New_York"])
def test_run_now_segmentation_counts_the_as_of_day_in_the_company_time_zone(settings, zone):
    from zoneinfo import ZoneInfo

    from ml import services
    from ml.models import CustomerSegment

    settings.TIME_ZONE = zone
    interactions, products, customers, group = make_shop(n_customers=200, history_days=120)
    # Wall-clock times in the company's zone: 23:59 on the as-of day and 00:00 the day after
    # fall on other UTC days (New York: 04:59 and 05:00 on 1 January; Tokyo: 14:59 and 15:00
    # on 31 December).
    late = pd.DataFrame({
        "customer_id": [9001, 9002], "product_id": [0, 0], "type": "purchase",
        "occurred_at": [AS_OF + pd.Timedelta(hours=23, minutes=59), AS_OF + pd.Timedelta(days=1)],
        "quantity": 1, "amount": [40.0, 40.0], "order_ref": ["late1", "late2"]})
    customers = pd.concat([customers, customers.iloc[:2].assign(customer_id=[9001, 9002])],
                          ignore_index=True)
    pk = store((pd.concat([interactions, late], ignore_index=True), products, customers, group),
               tz=ZoneInfo(zone))

    run = services.run_now("segmentation", as_of=date(2024, 12, 31), horizon_days=30)

    assert run.status == "succeeded", run.error
    segment = dict(CustomerSegment.objects.filter(run=run, customer_id__in=[pk[9001], pk[9002]])
                   .values_list("customer_id", "segment__name"))
    assert segment[pk[9001]] != PROSPECTS  # bought at 23:59 on the as-of day
    assert segment[pk[9002]] == PROSPECTS  # bought at 00:00 the day after: not seen
