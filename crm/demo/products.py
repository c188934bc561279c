"""The demo catalogue: products per category with prices, popularity, rhythm and partners."""
from __future__ import annotations

import numpy as np
import pandas as pd

from crm.demo.arrays import _group_offsets, _ids
from crm.demo.tables import _CATS, _COMPLEMENT, CATEGORY_NAMES


# --------------------------------------------------------------------------------------
# products
# --------------------------------------------------------------------------------------
def _make_products(rng, n_products: int, days: int):
    """The catalogue frame (import columns) and its hidden parameters (``meta``) for the simulation."""
    counts, cat, cat_start = _category_counts(rng, n_products)
    n = len(cat)
    name, desc, tags, price, replen, brand_of, model_of = _describe(rng, n, counts, cat_start)
    pop, active, disc_day = _popularity(rng, n, counts, cat_start, days)
    partner = _complements(rng, n, cat_start)
    _name_toners(partner, cat_start, name, desc, brand_of, model_of)
    products = _products_frame(n, cat, name, price, desc, tags, active, partner)
    meta = {"cat": cat, "counts": counts, "cat_start": cat_start, "pop": pop, "price": np.round(price, 2),
                "replen": replen, "active": active, "disc_day": disc_day, "partner": partner}
    return products, meta


def _category_counts(rng, n_products: int):
    """Products per category (at least 2, the rest by weight), each product's category, and the offsets."""
    C = len(_CATS)
    w = np.array([c["weight"] for c in _CATS])
    # at least 2 products per category, rest proportional to weight
    base = np.full(C, 2)
    extra = rng.multinomial(max(0, n_products - 2 * C), w / w.sum()) if n_products > 2 * C else 0
    counts = base + extra
    if n_products < 2 * C:  # tiny catalogue: just round-robin
        counts = np.bincount(np.arange(n_products) % C, minlength=C)
    cat = np.repeat(np.arange(C), counts)
    return counts, cat, _group_offsets(counts)


def _describe(rng, n, counts, cat_start):
    """Names, descriptions, tags, prices and replenishment rhythms, a category at a time."""
    name = np.empty(n, dtype=object)
    desc = np.empty(n, dtype=object)
    tags = np.empty(n, dtype=object)
    price = np.empty(n)
    replen = np.empty(n)
    brand_of = np.empty(n, dtype=object)
    model_of = np.empty(n, dtype=object)
    for ci, c in enumerate(_CATS):  # loop over ~12 categories only
        sl = slice(cat_start[ci], cat_start[ci + 1])
        m = counts[ci]
        if m == 0:
            continue
        name[sl], brand_of[sl], model_of[sl], desc[sl] = _texts(rng, c, m)
        tags[sl] = _tags(rng, c, m)
        p = np.exp(np.log(c["median"]) + c["sigma"] * rng.standard_normal(m))
        p = np.where(p >= 2, np.floor(p) + 0.99, np.round(p, 2))
        price[sl] = np.maximum(p, 0.1)
        replen[sl] = c["replen"] * np.exp(0.25 * rng.standard_normal(m))
    return name, desc, tags, price, replen, brand_of, model_of


def _texts(rng, c, m):
    """``m`` product names of category ``c`` (brand adjective noun size), their brands, models and descriptions."""
    b = np.array(c["brands"], dtype=object)[rng.integers(0, len(c["brands"]), m)]
    a = np.array(c["adjs"], dtype=object)[rng.integers(0, len(c["adjs"]), m)]
    nn = np.array(c["nouns"], dtype=object)[rng.integers(0, len(c["nouns"]), m)]
    s = np.array(c["sizes"], dtype=object)[rng.integers(0, len(c["sizes"]), m)]
    words = c["words"]
    wi = np.argsort(rng.random((m, len(words))), axis=1)[:, :3]
    wa = np.array(words, dtype=object)
    desc = (a + " " + np.char.lower(nn.astype(str)).astype(object) + " from " + b + " with "
            + wa[wi[:, 0]] + " and " + wa[wi[:, 1]] + ". " + np.char.capitalize(
                wa[wi[:, 2]].astype(str)).astype(object) + ".")
    return b + " " + a + " " + nn + " " + s, b, s, desc


def _tags(rng, c, m):
    """``m`` tag lists of category ``c``: its slug, then 2 to 4 of its tags."""
    slug = c["name"].lower().replace(" & ", "-").replace(" ", "-")
    tg = [x for x in c["tags"] if x != slug]
    k = rng.integers(2, 5, m)
    ti = np.argsort(rng.random((m, len(tg))), axis=1)
    tga = np.array(tg, dtype=object)
    first = np.full(m, slug, dtype=object)
    joined = first.copy()
    for j in range(4):
        joined = np.where(k > j, joined + ";" + tga[ti[:, j]], joined)
    return joined


def _popularity(rng, n, counts, cat_start, days):
    """Popularity (Zipf over a random rank within category, times log-normal noise), and which
    products are active (the others are discontinued on ``disc_day``)."""
    rank = np.empty(n)
    for ci in range(len(_CATS)):
        sl = slice(cat_start[ci], cat_start[ci + 1])
        rank[sl] = rng.permutation(counts[ci]) + 1
    pop = rank ** -0.9 * np.exp(0.3 * rng.standard_normal(n))

    active = rng.random(n) >= 0.04
    disc_day = np.where(active, days + 10, rng.integers(int(days * 0.3), max(int(days * 0.9), int(days * 0.3) + 1), n))
    pop = np.where(active, pop, pop * 0.6)
    return pop, active, disc_day


def _complements(rng, n, cat_start):
    """Each product's complement (printer -> toner ...), -1 for none."""
    partner = np.full(n, -1, dtype=np.int64)
    for src, (dst, p_has) in _COMPLEMENT.items():
        si, di = CATEGORY_NAMES.index(src), CATEGORY_NAMES.index(dst)
        s_idx = np.arange(cat_start[si], cat_start[si + 1])
        d_lo, d_hi = cat_start[di], cat_start[di + 1]
        if len(s_idx) == 0 or d_hi <= d_lo:
            continue
        has = rng.random(len(s_idx)) < p_has
        tgt = rng.integers(d_lo, d_hi, len(s_idx))
        if si == di:  # avoid self-pairing
            tgt = np.where(tgt == s_idx, d_lo + (tgt - d_lo + 1) % (d_hi - d_lo), tgt)
        ok = has & (tgt != s_idx)
        partner[s_idx[ok]] = tgt[ok]
    return partner


def _name_toners(partner, cat_start, name, desc, brand_of, model_of) -> None:
    """Printers: rename their toner partner after the printer model so the pair is obvious (in place)."""
    pi = CATEGORY_NAMES.index("Printers")
    pr = np.arange(cat_start[pi], cat_start[pi + 1])
    pr = pr[partner[pr] >= 0]
    if len(pr):
        t = partner[pr]
        # a toner may be shared by several printers: the last writer wins, which is fine
        name[t] = brand_of[pr] + " " + model_of[pr] + " Toner Cartridge"
        desc[t] = ("Original " + brand_of[pr] + " toner cartridge for the " + name[pr]
                   + ". Sharp prints, reliable page yield and easy cartridge swap.")


def _products_frame(n, cat, name, price, desc, tags, active, partner) -> pd.DataFrame:
    """The products import frame; ``attrs["complements"]`` lists the complement pairs by sku."""
    sku_prefix = np.array([c["name"][:3].upper().replace(" ", "X") for c in _CATS], dtype=object)
    sku = sku_prefix[cat] + "-" + pd.Series(_ids("", np.arange(1, n + 1), max(5, len(str(n))))).to_numpy(object)

    products = pd.DataFrame({
        "sku": sku.astype(str),
        "name": name.astype(str),
        "category": np.array(CATEGORY_NAMES, dtype=object)[cat].astype(str),
        "price": np.round(price, 2),
        "description": desc.astype(str),
        "tags": tags.astype(str),
        "active": np.where(active, "true", "false"),
    })
    src = np.nonzero(partner >= 0)[0]
    # not part of the CSV: handy for tests / demos ("which pairs are complements?")
    products.attrs["complements"] = list(zip(products["sku"].to_numpy()[src].tolist(),
                                             products["sku"].to_numpy()[partner[src]].tolist()))
    return products
