"""Vectorised helpers of the demo generator: ids, string columns, group offsets, times of day."""
from __future__ import annotations

import numpy as np

_DAY = 86400


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _ids(prefix: str, nums: np.ndarray, width: int) -> np.ndarray:
    """Fast vectorised ``f"{prefix}{n:0{width}d}"`` -> numpy unicode array."""
    nums = np.asarray(nums, dtype=np.int64)
    pows = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    p = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    mat = np.empty((len(nums), len(p) + width), dtype=np.uint8)
    mat[:, : len(p)] = p
    mat[:, len(p):] = (nums[:, None] // pows) % 10 + 48
    return mat.view(f"S{len(p) + width}").ravel().astype(f"U{len(p) + width}")


def _chunked_strings(n: int, make, chunk: int = 200_000) -> np.ndarray:
    """Object array of ``n`` Python strings built from ``make(a, b)`` numpy string chunks."""
    out = np.empty(n, dtype=object)
    for a in range(0, n, chunk):  # a handful of chunks, not a per-row loop
        b = min(n, a + chunk)
        out[a:b] = make(a, b).astype(object)
    return out


def _group_offsets(counts: np.ndarray) -> np.ndarray:
    off = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    return off


def _seconds_in_day(rng, n, weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    hours = rng.choice(24, size=n, p=w / w.sum())
    return hours * 3600 + rng.integers(0, 3600, size=n)


# hour-of-day profiles
_H_SHOP = [1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2, 3, 4, 5, 5.5, 6, 5.5, 5, 4.5, 4.5, 5, 6, 7, 7, 6, 4, 2]
_H_WORK = [0, 0, 0, 0, 0, 0, 0, 0.5, 3, 6, 6, 5, 3, 5, 6, 6, 5, 3, 0.5, 0, 0, 0, 0, 0]
_H_MAIL = [0, 0, 0, 0, 0, 0, 1, 4, 8, 6, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 0, 0, 0, 0]
