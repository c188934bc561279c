"""The demo customers' behaviour over the window: orders, lines, views, refunds, support and
the sales reps' calls, meetings and notes, as sorted column arrays."""
from __future__ import annotations

import functools

import numpy as np

from crm.demo.arrays import _DAY, _H_MAIL, _H_SHOP, _H_WORK, _group_offsets, _seconds_in_day
from crm.demo.tables import (
    _CALLS,
    _CATS,
    _CH,
    _COMPANY,
    _COMPLEMENT_P,
    _EXPLORE,
    _FAV_HI,
    _FAV_LO,
    _FIRST_DELAY,
    _GAP_HI,
    _GAP_LO,
    _GAP_SHAPE,
    _KIND_MIX,
    _NOTE_OFF,
    _ORDER_CH,
    _OWNED,
    _PRICE_BIAS,
    _QTY,
    _T,
    _TASTE_TILT,
    _VIEWS,
    CATEGORY_NAMES,
    KINDS,
)


def _simulate(rng, n, days, products, pm, reps, dow, promo_day, Lam, day_grid, end_ts):
    """Simulate all interactions; returns integer/float column arrays (sorted) and customer arrays.

    The steps draw from ``rng`` in a fixed order: the same seed gives the same business.
    """
    P, C, price, pop_cum, cat_start, cat_lo, cat_hi = _catalogue(products, pm)
    kind, signup_day, taste_cum = _customers(rng, n, days, pm)
    sample_products = functools.partial(_sample_products, rng, taste_cum, cat_lo, cat_hi, cat_start, pop_cum, P, C,
                                        price)
    mean_gap, shape, refund_p, F, fav_n, fav_prod, fav_every, fav_phase = _rhythm(rng, kind, n, sample_products, pm)
    lapsing, ocust, oj, oday, ots, okind, n_orders0 = _orders(Lam, signup_day, days, mean_gap, n, kind, rng, shape,
        day_grid)
    l_order, l_prod = _lines(F, fav_n, ocust, fav_every, oj, fav_phase, fav_prod, n_orders0, rng, okind,
        sample_products, pm, P, oday)
    O, l_order, L, l_cnt, l_off, ocust, ots, oday, okind, l_prod = _chronology(l_order, n_orders0, ots, ocust, oj, oday,
        okind, l_prod)
    och, l_cust, l_qty, l_amount, l_ts = _pricing(okind, O, rng, promo_day, oday, ocust, l_order, price, l_prod, ots)
    r_idx, r_ts, r_qty, r_amount, so, s1_ts, s1_prod, s1_cust, s1_note = _refunds(O, refund_p, ocust, rng, l_off, l_cnt,
        l_order, L, l_ts, end_ts, l_qty, l_amount, ots, l_prod)
    n_orders_c, signup_ts, rem_days, parts = _shopping(ocust, n, O, ots, signup_day, days, end_ts, lapsing, l_cust,
        l_ts, l_prod, l_qty, l_amount, l_order, och, r_ts, r_qty, r_amount, r_idx, s1_cust, s1_ts, s1_prod, s1_note,
        rng, so, L, kind, sample_products, pm)
    owned, rep_idx, has_company = _contacts(rng, rem_days, n, signup_day, days, dow, parts, kind, reps, n_orders_c,
        fav_prod, pm)
    return _assemble(parts, end_ts, signup_ts, O, kind, signup_day, has_company, owned, rep_idx)


def _catalogue(products, pm):
    """The catalogue's popularity as cumulative ranges per category, for sampling products."""
    P = len(products)
    C = len(_CATS)
    price = pm["price"]
    pop_cum = np.cumsum(pm["pop"])
    cat_start = pm["cat_start"]
    cat_lo = np.concatenate([[0.0], pop_cum])[cat_start[:-1]]
    cat_hi = pop_cum[np.maximum(cat_start[1:] - 1, 0)]
    cat_hi = np.where(pm["counts"] > 0, cat_hi, cat_lo)
    return P, C, price, pop_cum, cat_start, cat_lo, cat_hi


def _customers(rng, n, days, pm):
    """Each customer's kind, sign-up day and taste (a Dirichlet over categories, tilted per kind)."""
    # ---------------- customers ----------------
    kind = rng.choice(len(KINDS), size=n, p=_KIND_MIX / _KIND_MIX.sum())
    # signups: growing business (density rising over the window), last week excluded mostly
    signup_day = np.minimum((days * rng.random(n) ** 0.7).astype(np.int64), days - 1)
    # taste: Dirichlet over categories, tilted per kind
    alpha = np.tile(0.35 * np.array([c["weight"] for c in _CATS]), (len(KINDS), 1))
    for kn, tilt in _TASTE_TILT.items():
        for cn, f in tilt.items():
            alpha[KINDS.index(kn), CATEGORY_NAMES.index(cn)] *= f
    alpha = np.where(pm["counts"][None, :] > 0, alpha, 1e-9)
    taste = rng.gamma(alpha[kind])
    taste += 1e-12
    taste /= taste.sum(axis=1, keepdims=True)
    taste_cum = np.cumsum(taste, axis=1).astype(np.float32)
    taste_cum[:, -1] = 1.0
    return kind, signup_day, taste_cum


def _rhythm(rng, kind, n, sample_products, pm):
    """Each customer's purchase rhythm, refund propensity and favourite products."""
    mean_gap = rng.uniform(_GAP_LO[kind], _GAP_HI[kind])
    shape = _GAP_SHAPE[kind]
    refund_p = np.where(kind == KINDS.index("refund_prone"), rng.uniform(0.2, 0.4, n), 0.02)

    # favourites (up to 4 slots) with a per-product replenishment rhythm in "orders"
    F = 4
    fav_n = rng.integers(_FAV_LO[kind], _FAV_HI[kind] + 1)
    fav_prod = sample_products(np.repeat(np.arange(n), F), np.repeat(_PRICE_BIAS[kind], F)).reshape(n, F)
    fav_every = np.maximum(1, np.rint(pm["replen"][fav_prod] * np.exp(0.2 * rng.standard_normal((n, F)))
                                      / mean_gap[:, None])).astype(np.int64)
    fav_every = np.minimum(fav_every, 10_000)
    fav_phase = (rng.random((n, F)) * fav_every).astype(np.int64)
    return mean_gap, shape, refund_p, F, fav_n, fav_prod, fav_every, fav_phase


def _orders(Lam, signup_day, days, mean_gap, n, kind, rng, shape, day_grid):
    """The orders: a time-warped renewal process per customer."""
    # ---------------- orders: time-warped renewal process per customer ----------------
    op_start = Lam[signup_day]
    op_end = Lam[days]
    remaining = op_end - op_start
    exp_cnt = remaining / mean_gap
    K = np.ceil(exp_cnt * 1.3 + 3 * np.sqrt(exp_cnt) + 3).astype(np.int64)
    cap = np.full(n, 10**9, dtype=np.int64)
    lapsing = kind == KINDS.index("lapsing")
    cap[lapsing] = 2 + rng.geometric(rng.uniform(0.12, 0.35, lapsing.sum()))
    cap[kind == KINDS.index("one_off")] = 1
    K = np.clip(np.minimum(K, cap), 1, 2000)
    off = _group_offsets(K)
    tot = int(off[-1])
    ocust = np.repeat(np.arange(n), K)
    oj = np.arange(tot) - off[:-1][ocust]
    gaps = rng.gamma(shape[ocust], 1.0) * (mean_gap / shape)[ocust]
    first = oj == 0
    gaps[first] = rng.exponential(_FIRST_DELAY[kind])  # one per customer, in customer order
    cs = np.cumsum(gaps)
    t = op_start[ocust] + cs - (cs[off[:-1]] - gaps[off[:-1]])[ocust]
    keep = t < op_end
    ocust, oj, t = ocust[keep], oj[keep], t[keep]
    del gaps, cs, keep, first
    oday = np.minimum(np.interp(t, Lam, day_grid).astype(np.int64), days - 1)
    oday = np.maximum(oday, signup_day[ocust])
    ots = oday * _DAY + _seconds_in_day(rng, len(oday), _H_SHOP)
    okind = kind[ocust]
    n_orders0 = len(ocust)
    return lapsing, ocust, oj, oday, ots, okind, n_orders0


def _lines(F, fav_n, ocust, fav_every, oj, fav_phase, fav_prod, n_orders0, rng, okind, sample_products, pm, P, oday):
    """The order lines: favourites due, exploration by taste, complements; deduplicated."""
    # ---------------- order lines ----------------
    fav_hit = (np.arange(F)[None, :] < fav_n[ocust][:, None]) & \
              ((oj[:, None] + fav_phase[ocust]) % fav_every[ocust] == 0)
    fo, fs = np.nonzero(fav_hit)
    fav_line_prod = fav_prod[ocust[fo], fs]
    n_fav_in_order = np.bincount(fo, minlength=n_orders0)
    del fav_hit
    n_exp = rng.poisson(_EXPLORE[okind])
    n_exp = np.where(n_fav_in_order == 0, np.maximum(n_exp, 1), n_exp)
    eo = np.repeat(np.arange(n_orders0), n_exp)
    exp_prod = sample_products(ocust[eo], _PRICE_BIAS[okind[eo]])
    l_order = np.concatenate([fo, eo])
    l_prod = np.concatenate([fav_line_prod, exp_prod])
    # complements
    part = pm["partner"][l_prod]
    add = (part >= 0) & (rng.random(len(l_prod)) < _COMPLEMENT_P)
    l_order = np.concatenate([l_order, l_order[add]])
    l_prod = np.concatenate([l_prod, part[add]])
    # dedupe (order, product), drop discontinued products
    key = l_order * P + l_prod
    key.sort()  # sorted by order, then product; drop duplicates
    key = key[np.concatenate([[True], key[1:] != key[:-1]])]
    l_order, l_prod = key // P, key % P
    ok = oday[l_order] < pm["disc_day"][l_prod]
    l_order, l_prod = l_order[ok], l_prod[ok]
    del key, ok, part, add, fo, fs, eo, exp_prod, fav_line_prod
    return l_order, l_prod


def _chronology(l_order, n_orders0, ots, ocust, oj, oday, okind, l_prod):
    """The orders that kept lines, re-indexed chronologically, and their lines grouped."""
    # orders that still have lines, re-indexed chronologically
    has = np.bincount(l_order, minlength=n_orders0) > 0
    order_ids = np.nonzero(has)[0]
    chron = order_ids[np.lexsort((order_ids, ots[order_ids]))]
    new_idx = np.full(n_orders0, -1, dtype=np.int64)
    new_idx[chron] = np.arange(len(chron))
    ocust, oj, ots, oday, okind = ocust[chron], oj[chron], ots[chron], oday[chron], okind[chron]
    O = len(chron)
    l_order = new_idx[l_order]
    srt = np.argsort(l_order, kind="stable")
    l_order, l_prod = l_order[srt], l_prod[srt]
    L = len(l_order)
    l_cnt = np.bincount(l_order, minlength=O)
    l_off = _group_offsets(l_cnt)
    return O, l_order, L, l_cnt, l_off, ocust, ots, oday, okind, l_prod


def _pricing(okind, O, rng, promo_day, oday, ocust, l_order, price, l_prod, ots):
    """Each order's channel and discount, each line's quantity and amount."""
    # per-order channel and discount
    och = (rng.random(O)[:, None] > np.cumsum(_ORDER_CH, axis=1)[okind]).sum(axis=1)
    och = np.minimum(och, 2)  # 0 web, 1 store, 2 phone -> CHANNELS indices 0, 1, 2
    bargain = okind == KINDS.index("bargain")
    disc_p = np.where(bargain, 0.85, np.where(promo_day[oday], 0.4, 0.07))
    has_disc = rng.random(O) < disc_p
    disc_val = np.where(bargain, rng.choice([0.1, 0.15, 0.2, 0.25, 0.3, 0.4], O),
                        rng.choice([0.05, 0.1, 0.15, 0.2], O))
    disc = np.where(has_disc, disc_val, 0.0)

    l_cust = ocust[l_order]
    l_qty = 1 + rng.poisson(_QTY[okind[l_order]])
    l_amount = np.round(price[l_prod] * l_qty * (1.0 - disc[l_order]), 2)
    l_ts = ots[l_order]
    return och, l_cust, l_qty, l_amount, l_ts


def _refunds(O, refund_p, ocust, rng, l_off, l_cnt, l_order, L, l_ts, end_ts, l_qty, l_amount, ots, l_prod):
    """Refunds after purchases and the support tickets that precede some."""
    # ---------------- refunds ----------------
    refunded = rng.random(O) < refund_p[ocust]
    forced = l_off[:-1] + (rng.random(O) * l_cnt).astype(np.int64)
    r_line = (rng.random(L) < 0.4) & refunded[l_order]
    r_line[forced[refunded]] = True
    r_idx = np.nonzero(r_line)[0]
    r_delay = ((0.5 + rng.exponential(4.0, O)) * _DAY).astype(np.int64)  # per order
    r_ts = l_ts[r_idx] + r_delay[l_order[r_idx]] + rng.integers(0, 600, len(r_idx))
    okr = r_ts < end_ts
    r_idx, r_ts = r_idx[okr], r_ts[okr]
    q = l_qty[r_idx]
    partial = (rng.random(len(r_idx)) < 0.3) & (q > 1)
    r_qty = np.where(partial, 1 + (rng.random(len(r_idx)) * (q - 1)).astype(np.int64), q)
    r_amount = np.where(partial, np.floor(l_amount[r_idx] * r_qty / q * 100 + 1e-6) / 100, l_amount[r_idx])
    r_amount = np.minimum(r_amount, l_amount[r_idx])

    # support tickets preceding refunds (about the forced line of the order)
    so = np.nonzero(refunded & (ots + r_delay < end_ts) & (rng.random(O) < 0.5))[0]
    s1_ts = ots[so] + (r_delay[so] * rng.uniform(0.1, 0.9, len(so))).astype(np.int64)
    s1_prod = l_prod[forced[so]]
    s1_cust = ocust[so]
    s1_note = _NOTE_OFF["support_refund"][0] + rng.integers(0, _NOTE_OFF["support_refund"][1], len(so))
    return r_idx, r_ts, r_qty, r_amount, so, s1_ts, s1_prod, s1_cust, s1_note


def _shopping(ocust, n, O, ots, signup_day, days, end_ts, lapsing, l_cust, l_ts, l_prod, l_qty, l_amount, l_order, och,
              r_ts, r_qty, r_amount, r_idx, s1_cust, s1_ts, s1_prod, s1_note, rng, so, L, kind, sample_products, pm):
    """Purchases, refunds and support as interaction parts, then views (before purchases and browsing)."""
    # ---------------- per-customer aggregates for other interactions ----------------
    n_orders_c = np.bincount(ocust, minlength=n)
    last_ots = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_ots, ocust, ots) if O else None
    signup_ts = signup_day * _DAY
    rem_days = (days - signup_day).astype(float)
    # active window for browsing: lapsing stop browsing ~a month after their last order
    browse_end = np.where(lapsing & (last_ots >= 0), np.minimum(end_ts, last_ots + 30 * _DAY), end_ts)
    browse_end = np.maximum(browse_end, signup_ts + _DAY)

    parts = []  # tuples of (cust, type, ts, prod, qty, amount, order, channel, note)

    _add_part(parts, l_cust, "purchase", l_ts, l_prod, l_qty, l_amount, l_order, och[l_order])
    _add_part(parts, l_cust[r_idx], "refund", r_ts, l_prod[r_idx], r_qty, r_amount, l_order[r_idx],
             och[l_order[r_idx]], None)
    _add_part(parts, s1_cust, "support", s1_ts, s1_prod, channel=rng.choice([3, 2, 5], len(so)), note=s1_note)

    # views preceding purchases (web/app orders mostly)
    pv = np.nonzero((rng.random(L) < 0.3) & (och[l_order] == 0))[0]
    v1_ts = l_ts[pv] - 60 - (rng.exponential(0.8, len(pv)) * _DAY).astype(np.int64)
    lo = signup_ts[l_cust[pv]]
    v1_ts = np.where(v1_ts < lo, lo + (rng.random(len(pv)) * (l_ts[pv] - lo)).astype(np.int64), v1_ts)
    _add_part(parts, l_cust[pv], "view", v1_ts, l_prod[pv], channel=rng.choice([0, 4], len(pv), p=[0.7, 0.3]))
    # browsing views
    bspan = (browse_end - signup_ts) / _DAY
    nb = rng.poisson(bspan / 120.0 * _VIEWS[kind])
    bc = np.repeat(np.arange(n), nb)
    b_ts = signup_ts[bc] + (rng.random(len(bc)) * (browse_end - signup_ts)[bc]).astype(np.int64)
    b_prod = sample_products(bc)
    okb = (b_ts // _DAY) < pm["disc_day"][b_prod]
    _add_part(parts, bc[okb], "view", b_ts[okb], b_prod[okb], channel=rng.choice([0, 4], okb.sum(), p=[0.7, 0.3]))
    return n_orders_c, signup_ts, rem_days, parts


def _contacts(rng, rem_days, n, signup_day, days, dow, parts, kind, reps, n_orders_c, fav_prod, pm):
    """E-mails, owners, calls, meetings, notes and general support tickets."""
    # marketing / transactional emails (~ one every 2 months)
    ne = rng.poisson(rem_days / 150.0)
    ec = np.repeat(np.arange(n), ne)
    e_ts = _uniform_days(rng, signup_day, days, dow, ec, hours=_H_MAIL)
    _add_part(parts, ec, "email", e_ts, channel="email",
             note=_NOTE_OFF["email"][0] + rng.integers(0, _NOTE_OFF["email"][1], len(ec)))

    # owner assignment
    owned = (rng.random(n) < _OWNED[kind]) & (len(reps) > 0)
    rep_w = np.linspace(1.5, 1.0, max(len(reps), 1))
    rep_idx = rng.choice(max(len(reps), 1), size=n, p=rep_w / rep_w.sum())

    # calls (owned accounts)
    nc = rng.poisson(rem_days / 250.0 * _CALLS[kind] * owned)
    cc = np.repeat(np.arange(n), nc)
    c_ts = _uniform_days(rng, signup_day, days, dow, cc, weekdays_only=True)
    _add_part(parts, cc, "call", c_ts, channel="phone",
             note=_NOTE_OFF["call"][0] + rng.integers(0, _NOTE_OFF["call"][1], len(cc)))
    # meetings (owned B2B accounts, mostly big occasional)
    has_company = rng.random(n) < _COMPANY[kind]
    mrate = np.where(kind == KINDS.index("big_occasional"), 3.0, 0.4) * owned * has_company
    nm = rng.poisson(rem_days / 365.0 * mrate)
    mc = np.repeat(np.arange(n), nm)
    m_ts = _uniform_days(rng, signup_day, days, dow, mc, weekdays_only=True)
    _add_part(parts, mc, "meeting", m_ts, channel=rng.choice([6, 7], len(mc)),
             note=_NOTE_OFF["meeting"][0] + rng.integers(0, _NOTE_OFF["meeting"][1], len(mc)))
    # notes: follow-ups of calls/meetings plus free notes
    fc = np.concatenate([cc, mc])
    f_ts = np.concatenate([c_ts, m_ts])
    fsel = rng.random(len(fc)) < 0.3
    n2 = rng.poisson(rem_days / 365.0 * 0.5 * owned)
    nc2 = np.repeat(np.arange(n), n2)
    note_c = np.concatenate([fc[fsel], nc2])
    note_ts = np.concatenate([f_ts[fsel] + rng.integers(300, 1800, fsel.sum()), _uniform_days(rng, signup_day, days, dow, nc2)])
    _add_part(parts, note_c, "note", note_ts, channel="internal",
             note=_NOTE_OFF["note"][0] + rng.integers(0, _NOTE_OFF["note"][1], len(note_c)))
    # general support tickets
    ns = rng.poisson(0.04 * n_orders_c + rem_days / 730.0 * 0.2)
    sc = np.repeat(np.arange(n), ns)
    s_ts = _uniform_days(rng, signup_day, days, dow, sc)
    s_prod = np.where(rng.random(len(sc)) < 0.5, fav_prod[sc, 0], -1)
    s_prod = np.where((s_prod >= 0) & ((s_ts // _DAY) >= pm["disc_day"][np.maximum(s_prod, 0)]), -1, s_prod)
    _add_part(parts, sc, "support", s_ts, s_prod, channel=rng.choice([3, 2, 5], len(sc)),
             note=_NOTE_OFF["support"][0] + rng.integers(0, _NOTE_OFF["support"][1], len(sc)))
    return owned, rep_idx, has_company


def _assemble(parts, end_ts, signup_ts, O, kind, signup_day, has_company, owned, rep_idx):
    """All parts as columns, inside the window and after sign-up, in time order."""
    # ---------------- assemble interactions ----------------
    cols = [np.concatenate([p[i] for p in parts]) for i in range(9)]
    parts.clear()
    i_cust, i_type, i_ts, i_prod, i_qty, i_amt, i_order, i_ch, i_note = cols
    del cols
    ok = (i_ts < end_ts) & (i_ts >= signup_ts[i_cust])
    cols = [i_cust, i_type, i_ts, i_prod, i_qty, i_amt, i_order, i_ch, i_note]
    del i_cust, i_type, i_ts, i_prod, i_qty, i_amt, i_order, i_ch, i_note
    if not ok.all():
        for j in range(len(cols)):
            cols[j] = cols[j][ok]
    order = np.lexsort((cols[1], cols[0], cols[2]))
    for j in range(len(cols)):
        cols[j] = cols[j][order]
    del order, ok
    return cols, O, kind, signup_day, has_company, owned, rep_idx


def _sample_products(rng, taste_cum, cat_lo, cat_hi, cat_start, pop_cum, P, C, price, cust_idx, bias=None):
    """``len(cust_idx)`` products drawn by each customer's taste and the catalogue's popularity;
    ``bias`` -1 / +1: the cheaper / dearer of two draws."""
    m = len(cust_idx)
    u = rng.random(m, dtype=np.float32)
    cat = np.minimum((taste_cum[cust_idx] < u[:, None]).sum(axis=1), C - 1)
    lo, hi = cat_lo[cat], cat_hi[cat]

    def draw():
        tgt = lo + rng.random(m) * (hi - lo)
        p = np.searchsorted(pop_cum, tgt, side="right")
        p = np.clip(p, cat_start[cat], np.maximum(cat_start[cat + 1] - 1, cat_start[cat]))
        return np.minimum(p, P - 1)

    p = draw()
    if bias is not None and np.any(bias != 0):
        p2 = draw()
        cheaper = np.where(price[p2] < price[p], p2, p)
        dearer = np.where(price[p2] > price[p], p2, p)
        p = np.where(bias < 0, cheaper, np.where(bias > 0, dearer, p))
    return p


def _add_part(parts, cust, typ, ts, prod=None, qty=None, amount=None, order=None, channel=None, note=None):
    """Append interactions of one type as columns (cust, type, ts, prod, qty, amount, order, channel, note)."""
    m = len(cust)
    parts.append((
        np.asarray(cust, np.int64),
        np.full(m, _T[typ], np.int8),
        np.asarray(ts, np.int64),
        np.full(m, -1, np.int64) if prod is None else np.asarray(prod, np.int64),
        np.zeros(m, np.int64) if qty is None else np.asarray(qty, np.int64),
        np.zeros(m) if amount is None else np.asarray(amount, float),
        np.full(m, -1, np.int64) if order is None else np.asarray(order, np.int64),
        np.full(m, _CH[channel], np.int8) if isinstance(channel, str) else np.asarray(channel, np.int8),
        np.full(m, -1, np.int16) if note is None else np.asarray(note, np.int16),
    ))


def _uniform_days(rng, signup_day, days, dow, cust, weekdays_only=False, hours=_H_WORK):
    """A time for each of ``cust`` on a uniform day after their sign-up (weekends moved to Monday)."""
    d = signup_day[cust] + (rng.random(len(cust)) * (days - signup_day[cust])).astype(np.int64)
    if weekdays_only:
        dd = (d + (dow[0])) % 7
        d = d + np.where(dd == 5, 2, np.where(dd == 6, 1, 0))
    ts = d * _DAY + _seconds_in_day(rng, len(cust), hours)
    return ts
