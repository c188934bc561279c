"""What a training run stores as its metrics must be valid JSON for the database's JSON column."""


def test_run_metrics_turn_nan_and_infinity_into_null_and_keep_text():
    import numpy as np

    from ml.publishing import plain_json as _clean

    cleaned = _clean({"ratio": float("inf"), "low": -np.inf, "gap": np.float64("nan"), "n": np.int64(3),
                      "note": "NaN in a reason stays text", "rows": [1.5, float("nan")]})
    assert cleaned == {"ratio": None, "low": None, "gap": None, "n": 3, "note": "NaN in a reason stays text",
                       "rows": [1.5, None]}
