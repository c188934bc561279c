"""Writing a run's forecasts: one home for the one-process run (ml.training) and the scoring
chunks (ml.scoring)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ml import data
from ml.models import Forecast

FORECAST_COLUMNS = ["expected_purchases", "expected_spend", "churn_probability", "clv", "expected_refund_rate",
                    "purchases_p10", "purchases_p90", "spend_p10", "spend_p90"]


def write_forecasts(run_id: int, pred: pd.DataFrame) -> int:
    """Write the forecasts ``pred`` (CustomerForecaster.predict: index customer_id, the
    FORECAST_COLUMNS, basis, factors) under run ``run_id``, clipped to their ranges (non-negative;
    probabilities and rates at most 1; NaN as NULL); returns the rows written. Call inside the
    caller's transaction."""
    values = pred[FORECAST_COLUMNS].astype(float).clip(lower=0)
    values["churn_probability"] = values["churn_probability"].clip(upper=1)
    values["expected_refund_rate"] = values["expected_refund_rate"].clip(upper=1)
    rows = zip(pred.index.to_numpy(), *(values[c].to_numpy() for c in FORECAST_COLUMNS), pred["basis"].astype(str),
               pred["factors"])
    return data.bulk_insert(Forecast, ["run_id", "customer_id", *FORECAST_COLUMNS, "basis", "factors"], (
        (run_id, int(r[0]), *(None if np.isnan(v) else float(v) for v in r[1:10]), r[10], json.dumps([str(f) for f in r[11]]))
        for r in rows))
