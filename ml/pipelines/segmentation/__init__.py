"""Customer segmentation (see :mod:`.segmenter`): features, models, the backtest choice, names."""
from ml.pipelines.segmentation.features import customer_features
from ml.pipelines.segmentation.naming import PROSPECTS, UNUSUAL, match_segments
from ml.pipelines.segmentation.segmenter import CustomerSegmenter, NothingToSegment

__all__ = ["CustomerSegmenter", "NothingToSegment", "customer_features", "match_segments", "PROSPECTS", "UNUSUAL"]
