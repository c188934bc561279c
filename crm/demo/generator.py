"""The demo generator's steps: calendar, catalogue, simulation, then the three import frames."""
from __future__ import annotations

import datetime as _dt

import numpy as np
import pandas as pd

from crm.demo.arrays import _DAY, _chunked_strings, _group_offsets, _ids
from crm.demo.products import _make_products
from crm.demo.simulation import _simulate
from crm.demo.tables import (
    _CO_PREFIX,
    _CO_SUFFIX,
    _COUNTRIES,
    _FIRST,
    _FREE_DOMAINS,
    _LAST,
    _NOTE_LIST,
    CHANNELS,
    CUSTOMER_COLUMNS,
    INTERACTION_TYPES,
    KINDS,
)


def generate(n_customers: int = 2000, seed: int = 0, end: _dt.date | None = None,
             n_products: int | None = None, sales_reps: tuple[str, ...] = ("alice", "bob", "carol"),
             days: int = 730) -> dict[str, pd.DataFrame]:
    """Generate a synthetic demo business.

    Returns ``{"customers": df, "products": df, "interactions": df}`` with exactly the
    import-format columns (see ``CUSTOMER_COLUMNS`` etc.). Interactions span ``days``
    days ending on ``end`` (inclusive; default: yesterday, the last whole day: the rest of today
    has not happened yet, and the import refuses future-dated rows, crm.clock). Deterministic
    for ``(seed, end)``.
    Numbers are floats rounded to cents / ints; repeated string columns of the
    interactions frame are pandas Categoricals to keep memory low (``to_csv`` writes
    their values; a missing ``product_sku`` / ``order_ref`` / ``notes`` is written empty).
    """
    n = int(n_customers)
    if n < 1:
        raise ValueError("n_customers must be >= 1")
    days = int(days)
    if days < 7:
        raise ValueError("days must be >= 7")
    if end is None:
        end = _dt.date.today() - _dt.timedelta(days=1)
    if isinstance(end, _dt.datetime):
        end = end.date()
    if n_products is None:
        n_products = max(50, min(5000, n // 20))
    n_products = max(1, int(n_products))
    reps = tuple(sales_reps or ())
    rng = np.random.default_rng(seed)

    rng = np.random.default_rng(seed)
    start, start64, days, dow, promo_day, Lam, day_grid, end_ts = _calendar(end, days)
    products, pm = _make_products(rng, n_products, days)
    sim = _simulate(rng, n, days, products, pm, reps, dow, promo_day, Lam, day_grid, end_ts)
    cols, O, kind, signup_day, has_company, owned, rep_idx = sim
    del sim
    interactions = _interactions_frame(cols, n, O, start, products)
    del cols
    customers = _customers_frame(rng, n, start64, kind, signup_day, has_company, owned, rep_idx, reps)
    return {"customers": customers, "products": products, "interactions": interactions}


def _calendar(end: _dt.date, days: int):
    """The window's days and its weekly x yearly purchase intensity, as the time warp of the
    renewal processes (``Lam``: cumulative intensity at each day boundary)."""
    start = end - _dt.timedelta(days=days - 1)
    start64 = np.datetime64(start.isoformat(), "D")
    day_dates = start64 + np.arange(days)
    end_ts = days * _DAY  # exclusive bound on timestamps (seconds since start midnight)

    dow = (day_dates.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 0 = Monday
    month = day_dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dom = (day_dates - day_dates.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    weekly = np.array([1.0, 0.95, 1.0, 1.05, 1.15, 1.3, 0.75])[dow]
    yearly = np.ones(days)
    yearly[month == 11] = 1.3
    yearly[(month == 11) & (dom >= 22)] = 2.0          # Black Friday / Cyber week
    yearly[(month == 12) & (dom <= 22)] = 1.6          # Christmas shopping
    yearly[(month == 12) & (dom > 24)] = 0.7
    yearly[month == 1] = 0.85
    yearly[(month == 7) | (month == 8)] = 0.9
    intensity = weekly * yearly
    intensity /= intensity.mean()
    promo_day = (month == 11) & (dom >= 22) | (month == 12) & (dom <= 2)
    Lam = np.concatenate([[0.0], np.cumsum(intensity)])
    day_grid = np.arange(days + 1, dtype=float)

    return start, start64, days, dow, promo_day, Lam, day_grid, end_ts


def _interactions_frame(cols, n: int, O: int, start: _dt.date, products: pd.DataFrame) -> pd.DataFrame:
    """The simulated column arrays as the interactions import frame (repeated strings as Categoricals)."""
    i_cust, i_type, i_ts, i_prod, i_qty, i_amt, i_order, i_ch, i_note = cols
    N = len(i_cust)
    cid_width = max(6, len(str(n)))
    cust_ids = _ids("C", np.arange(1, n + 1), cid_width)
    base_s = np.datetime64(start.isoformat(), "s")
    # unique strings are built chunk-wise straight into object arrays (keeps peak memory low)
    occurred = _chunked_strings(
        N, lambda a, b, ts=i_ts: np.datetime_as_string(base_s + ts[a:b].astype("timedelta64[s]"), unit="s")
    )
    del i_ts
    id_width = max(8, len(str(N)))
    ext_ids = _chunked_strings(N, lambda a, b: _ids("I", np.arange(a + 1, b + 1), id_width))
    skus = products["sku"].to_numpy()
    order_refs = _ids("O", np.arange(1, O + 1), max(7, len(str(O))))
    interactions = pd.DataFrame(
        {
            "customer_external_id": pd.Categorical.from_codes(
                i_cust, categories=pd.Index(cust_ids, dtype=object)
            ),
            "type": pd.Categorical.from_codes(i_type.astype(np.int64), categories=INTERACTION_TYPES),
            "occurred_at": occurred,
            "product_sku": pd.Categorical.from_codes(i_prod, categories=pd.Index(skus, dtype=object)),
            "quantity": i_qty,
            "amount": i_amt,
            "order_ref": pd.Categorical.from_codes(
                i_order, categories=pd.Index(order_refs, dtype=object)
            ),
            "external_id": ext_ids,
            "channel": pd.Categorical.from_codes(i_ch.astype(np.int64), categories=CHANNELS),
            "notes": pd.Categorical.from_codes(i_note.astype(np.int64), categories=_NOTE_LIST),
        }
    )
    del occurred, ext_ids, i_cust, i_type, i_prod, i_qty, i_amt, i_order, i_ch, i_note

    return interactions


def _customers_frame(rng, n, start64, kind, signup_day, has_company, owned, rep_idx, reps) -> pd.DataFrame:
    """The customers import frame: names, e-mails, phones, places, owners, sign-up dates and the latent kind."""
    cust_ids = _ids("C", np.arange(1, n + 1), max(6, len(str(n))))  # as the interactions frame numbers them
    first_i = rng.integers(0, len(_FIRST), n)
    last_i = rng.integers(0, len(_LAST), n)
    fa, la = np.array(_FIRST, dtype=object), np.array(_LAST, dtype=object)
    name = fa[first_i] + " " + la[last_i]
    co_i = rng.integers(0, len(_CO_PREFIX), n)
    cs_i = rng.integers(0, len(_CO_SUFFIX), n)
    company = np.where(has_company, np.array(_CO_PREFIX, dtype=object)[co_i] + " "
                       + np.array(_CO_SUFFIX, dtype=object)[cs_i], "")
    slug = pd.Series(company).str.lower().str.replace("&", "and", regex=False) \
        .str.replace(r"[^a-z0-9]+", "-", regex=True).str.strip("-")
    domain = np.where(has_company, (slug + ".example").to_numpy(object),
                      np.array(_FREE_DOMAINS, dtype=object)[rng.integers(0, len(_FREE_DOMAINS), n)])
    local = pd.Series(fa[first_i] + "." + la[last_i]).str.lower().str.replace(" ", "", regex=False)
    base = local + "@" + pd.Series(domain)
    dup = base.groupby(base).cumcount().to_numpy()
    suffix = np.where(dup > 0, pd.Series(dup + 1).astype(str).to_numpy(object), "")
    email = (local + pd.Series(suffix) + "@" + pd.Series(domain)).to_numpy(object)
    cw = np.array([c[2] for c in _COUNTRIES])
    ci = rng.choice(len(_COUNTRIES), size=n, p=cw / cw.sum())
    ncity = np.array([len(c[3]) for c in _COUNTRIES])
    city_flat = np.array([city for c in _COUNTRIES for city in c[3]], dtype=object)
    city_off = _group_offsets(ncity)[:-1]
    city = city_flat[city_off[ci] + (rng.random(n) * ncity[ci]).astype(np.int64)]
    cc_code = np.array(["+" + c[1] + " " for c in _COUNTRIES], dtype=object)[ci]
    num = rng.integers(200_000_000, 999_999_999, n)
    numstr = _ids("", num, 9).astype(object)
    phone = cc_code + pd.Series(numstr).str.slice(0, 3).to_numpy(object) + " " + \
        pd.Series(numstr).str.slice(3, 6).to_numpy(object) + " " + pd.Series(numstr).str.slice(6).to_numpy(object)
    no_phone = rng.random(n) < 0.1
    phone = np.where(no_phone, "", phone)
    owner = np.where(owned, np.array(reps or ("",), dtype=object)[rep_idx], "")
    signup = np.datetime_as_string(start64 + signup_day, unit="D")
    customers = pd.DataFrame({
        "external_id": cust_ids.astype(object),
        "name": name,
        "email": email,
        "phone": phone,
        "company": company,
        "country": np.array([c[0] for c in _COUNTRIES], dtype=object)[ci],
        "city": city,
        "signup_date": signup.astype(object),
        "owner": owner,
        "demo_kind": np.array(KINDS, dtype=object)[kind],
    })
    for col in CUSTOMER_COLUMNS:
        customers[col] = customers[col].astype(str)
    return customers
