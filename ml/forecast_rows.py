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
    frame = pd.DataFrame({"run_id": run_id, "customer_id": pred.index.to_numpy(np.int64)})
    for column in FORECAST_COLUMNS:
        frame[column] = values[column].to_numpy()
    frame["basis"] = pred["basis"].astype(str).to_numpy(object)
    frame["factors"] = [json.dumps([str(f) for f in factors]) for factors in pred["factors"]]
    return data.write_frame(Forecast, frame)
