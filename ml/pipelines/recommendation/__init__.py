"""Product recommendations (see :mod:`.recommender`): history, scorers, reorder, the backtest
choice, reasons."""
from ml.pipelines.recommendation.holdout import evaluate_holdout
from ml.pipelines.recommendation.recommender import FIT_COLUMNS, NO_ACTIVE, NO_CATALOGUE, NotSupported, Recommender

__all__ = ["FIT_COLUMNS", "NO_ACTIVE", "NO_CATALOGUE", "NotSupported", "Recommender", "evaluate_holdout"]
