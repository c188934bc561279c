"""Write contract CSV files of a given size for import benchmarks (synthetic, seeded).

    python bench/make_import_files.py OUT_DIR --interactions 1000000 --customers 100000 --products 5000
"""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--products", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    cust = pd.DataFrame({
        "external_id": [f"C{i:07d}" for i in range(args.customers)],
        "name": [f"Customer {i}" for i in range(args.customers)],
        "email": [f"c{i}@example.com" for i in range(args.customers)],
        "country": rng.choice(["DE", "FR", "US", "GB"], args.customers),
        "signup_date": (pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 700, args.customers), "D"))
        .strftime("%Y-%m-%d"),
        "segment_hint": rng.choice(["a", "b", ""], args.customers),
    })
    cust.to_csv(args.out / "customers.csv", index=False)
    prod = pd.DataFrame({
        "sku": [f"P{i:05d}" for i in range(args.products)],
        "name": [f"Product {i}" for i in range(args.products)],
        "category": rng.choice([f"Category {c}" for c in range(12)], args.products),
        "price": np.round(rng.lognormal(3, 1, args.products), 2),
        "description": "A product",
        "tags": "x;y",
        "active": "true",
    })
    prod.to_csv(args.out / "products.csv", index=False)
    n = args.interactions
    when = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 700 * 86400, n), "s")
    kinds = rng.choice(["purchase", "purchase", "purchase", "view", "email", "call", "refund"], n)
    inter = pd.DataFrame({
        "customer_external_id": np.char.add("C", np.char.zfill(rng.integers(0, args.customers, n).astype(str), 7)),
        "type": kinds,
        "occurred_at": when.strftime("%Y-%m-%dT%H:%M:%S"),
        "product_sku": np.char.add("P", np.char.zfill(rng.integers(0, args.products, n).astype(str), 5)),
        "quantity": rng.integers(1, 4, n),
        "amount": np.round(rng.lognormal(3, 1, n), 2),
        "order_ref": np.char.add("O", (np.arange(n) // 2).astype(str)),
        "external_id": np.char.add("I", np.arange(n).astype(str)),
        "channel": rng.choice(["web", "store", "phone"], n),
    })
    inter.to_csv(args.out / "interactions.csv", index=False)
    print(f"wrote {args.customers} customers, {args.products} products, {n} interactions to {args.out}")


if __name__ == "__main__":
    main()
