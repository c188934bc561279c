"""Rolling-origin backtests, shared by every model family: which windows of the company's own
history are held back, and how a candidate is chosen from its scores on them.

The rule (stated in the README): with ``D`` days of history up to ``as_of`` (from the first
purchase, inclusive) and a horizon of ``H`` days,

- the backtest window is ``W = min(H, D // 3)`` days: the horizon itself once the history
  holds three horizons, otherwise a third of the history, so that the oldest window still has
  at least ``W`` days of history before it (models such as BG/NBD and the naive rate forecast
  any length of window, and scale from ``W`` to ``H``);
- the origins are the cuts ``as_of - W``, ``as_of - 1.5W``, ``as_of - 2W`` (rolling by half a
  window, so the windows overlap by half; at most ``MAX_ORIGINS``, each with at least ``W`` days
  of history before it): each candidate is fitted on the data up to a cut and scored on the
  ``W`` days after it, which really happened. Half-window steps give three windows as soon as
  anything can be validated, keep them recent, and leave each fit more history than windows
  laid end to end would;
- when ``W`` is under ``MIN_WINDOW_DAYS`` (fewer than 21 days of history) nothing is held
  back: the models are fitted on all the history and published as "not yet validated".

Choice (:func:`choose`): the candidate with the lowest mean loss over the origins is the
*best*; the published one is the *simplest* candidate (first in the given order, baselines
first) whose loss is within the spread between origins of the best's: the mean of its
per-origin loss differences to the best is no more than their standard error (the
"one-standard-error rule" of cross-validation), and that is no worse on average than any
simpler candidate passed over. Nothing here is random: the same scores give the same
choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# A window shorter than a week mixes weekdays unevenly and holds too few purchases to tell
# candidates apart.
MIN_WINDOW_DAYS = 7
# Origins held back at most: each one costs a fit of every candidate, and windows further back
# describe the business as it was rather than as it is.
MAX_ORIGINS = 3


@dataclass(frozen=True)
class BacktestPlan:
    """The windows a run holds back. ``cuts`` are the origins, most recent first (midnight of
    the last day a backtest fit may see); each is scored on ``(cut, cut + window_days]``."""

    as_of: pd.Timestamp
    horizon_days: int
    history_days: int
    window_days: int
    cuts: tuple
    reason: str

    @property
    def validated(self) -> bool:
        return bool(self.cuts)

    def window(self, cut: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
        """The first and last day scored after ``cut`` (both inclusive)."""
        return cut + pd.Timedelta(days=1), cut + pd.Timedelta(days=self.window_days)

    def to_json(self) -> dict:
        return {"as_of": str(self.as_of.date()), "horizon_days": int(self.horizon_days),
                "history_days": int(self.history_days), "window_days": int(self.window_days),
                "validated": self.validated, "reason": self.reason,
                "origins": [{"cut": str(c.date()), "first_day": str(self.window(c)[0].date()),
                             "last_day": str(self.window(c)[1].date())} for c in self.cuts]}


def plan_backtest(first_day, as_of, horizon_days: int, max_origins: int = MAX_ORIGINS,
                  min_window: int = MIN_WINDOW_DAYS) -> BacktestPlan:
    """The backtest windows for history starting on ``first_day`` (None: no history) and
    ending on ``as_of`` (both dates, inclusive), for a ``horizon_days`` forecast."""
    as_of = pd.Timestamp(as_of).normalize()
    horizon = int(horizon_days)
    if first_day is None or pd.isna(first_day):
        return BacktestPlan(as_of, horizon, 0, 0, (), "no history on or before the as-of date")
    history = int((as_of - pd.Timestamp(first_day).normalize()).days) + 1
    window = min(horizon, history // 3)
    if window < min_window:
        return BacktestPlan(as_of, horizon, history, 0, (),
                            f"not yet validated: {history} days of history (holding back a window of at least "
                            f"{min_window} days needs {3 * min_window})")
    step = max(window // 2, 1)
    n = min(max_origins, (history - 2 * window) // step + 1)
    cuts = tuple(as_of - pd.Timedelta(days=window + k * step) for k in range(n))
    if window < horizon:
        reason = (f"{history} days of history, under three horizons: validated on {n} windows of {window} days "
                  f"(a third of the history), scaled to the {horizon}-day horizon")
    else:
        reason = f"validated on {n} windows of {window} days"
    return BacktestPlan(as_of, horizon, history, window, cuts, reason)


def choose(losses: dict, order, label: str = "loss") -> dict | None:
    """Pick a candidate from its per-origin losses (lower is better).

    ``losses``: name -> sequence of one loss per origin (None or NaN where it could not be
    scored: such a candidate is not eligible). ``order``: every name, simplest first (the
    baselines first). Returns ``{"chosen", "best", "order", "mean", "spread", "origins", "reason"}``
    (plain floats; ``order``: the candidates scored, simplest first, as a list, since a JSON
    object stored in PostgreSQL keeps no key order), or None when no candidate was scored on
    every origin.
    """
    order = [n for n in order if n in losses]
    table = {n: np.asarray([np.nan if v is None else float(v) for v in losses[n]], float) for n in order}
    eligible = [n for n in order if len(table[n]) and np.isfinite(table[n]).all()]
    if not eligible:
        return None
    k = len(table[eligible[0]])
    mean = {n: float(table[n].mean()) for n in eligible}
    best = min(eligible, key=lambda n: (mean[n], eligible.index(n)))
    spread = {}
    chosen = best
    for n in eligible:
        if n == best:
            spread[n] = 0.0
            continue
        d = table[n] - table[best]
        spread[n] = float(d.std(ddof=1) / np.sqrt(k)) if k > 1 else 0.0
    # Simplest first: the first one within the spread of the best wins, provided it is no worse
    # on average than any simpler candidate already passed over (a noisy candidate with a wide
    # spread must not slip in ahead of a steadier one).
    passed = np.inf
    for n in eligible:
        if n == best or (mean[n] - mean[best] <= spread[n] and mean[n] <= passed):
            chosen = n
            break
        passed = min(passed, mean[n])
    if chosen == best:
        reason = (f"{best}: the lowest mean {label} over {k} backtest window{'s' if k != 1 else ''}"
                  + ("" if len(eligible) == 1 else
                     ", by more than the spread between windows against every simpler candidate"))
    else:
        reason = (f"{chosen}: within the spread between the {k} backtest windows of the best, {best} "
                  f"(mean {label} {mean[chosen]:.4g} against {mean[best]:.4g}), so the simpler candidate is kept")
    return {"chosen": chosen, "best": best, "order": order, "mean": mean, "spread": spread,
            "origins": {n: [None if not np.isfinite(v) else float(v) for v in table[n]] for n in order},
            "reason": reason}


def relative(values: dict, reference: str) -> dict:
    """Each candidate's per-origin value divided by the reference candidate's on that origin,
    so that windows of different levels weigh alike (a reference value of 0 leaves the raw value)."""
    ref = np.asarray([np.nan if v is None else float(v) for v in values[reference]], float)
    out = {}
    for name, vals in values.items():
        v = np.asarray([np.nan if x is None else float(x) for x in vals], float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[name] = np.where(ref > 0, v / np.where(ref > 0, ref, 1.0), v).tolist()
    return out
