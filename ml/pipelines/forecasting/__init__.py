"""Customer forecasts (see :mod:`.forecaster`): features, candidate models, the backtest choice,
intervals and the factors in words."""
from ml.pipelines.forecasting.evaluation import BASELINE_OF
from ml.pipelines.forecasting.features import daily_purchases
from ml.pipelines.forecasting.forecaster import CustomerForecaster, evaluate_holdout, fit_evaluate
from ml.pipelines.forecasting.intervals import Z90, total_interval
from ml.pipelines.forecasting.models import ALGORITHMS

__all__ = ["ALGORITHMS", "BASELINE_OF", "CustomerForecaster", "Z90", "daily_purchases", "evaluate_holdout",
           "fit_evaluate", "total_interval"]
