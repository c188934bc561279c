"""The numeric core of the CRM's models: pandas / numpy / scikit-learn / scipy only.

Nothing in this package imports Django. ``ml/data.py`` turns the database into the
frames described in :mod:`ml.pipelines.schema` and writes the results back.

Shared by every family: :mod:`.schema` (the input frames, the interaction types and the one
``as_of`` cut) and :mod:`.backtest` (the rolling-origin windows and the choice on them). Three
families, each cut by role:

- :mod:`.segmentation`: ``features`` (behaviour per customer), ``models`` (the clustering space,
  K-means, DBSCAN, RFM, assignment), ``evaluation`` (the choice on the backtest), ``naming``
  (segment names and profiles in words), ``segmenter`` (:class:`CustomerSegmenter`);
- :mod:`.forecasting`: ``features`` (customer-days and histories as of a cut), ``btyd``
  (BG/NBD, Pareto/NBD, Gamma-Gamma), ``models`` (the candidates and their outputs, churn
  probability among them), ``candidates`` (every candidate fitted as of a cut), ``intervals``
  (P10-P90), ``evaluation`` and ``metrics`` (scores and the choice per target), ``reasons``
  (the factors in words), ``forecaster`` (:class:`CustomerForecaster`);
- :mod:`.recommendation`: ``history`` (sparse purchase history), ``scorers`` and ``factors``
  (the cross-sell candidates), ``reorder`` (replenishment), ``ranking`` (lists and their
  metrics), ``backtest`` (the choice on the origins), ``holdout`` (a fit scored on the next
  window), ``reasons`` (why a product is suggested), ``recommender`` (:class:`Recommender`),
  ``uplift`` (shown vs control customers: two rates and their difference).

Every model class follows scikit-learn's contract: the constructor only stores parameters,
``fit(interactions, ..., as_of)`` returns the model, and what it learns ends in ``_``. The three
family models share ``plan_``, ``backtest_`` and ``outcome_`` after ``fit``.
"""
