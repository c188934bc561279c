"""Every model class of ml/pipelines keeps scikit-learn's estimator contract: the constructor only
stores its parameters, ``fit`` returns the model itself, and what ``fit`` learns ends in ``_``
(private caches start with ``_``). Small frames from tests/shapes.py, fixed seeds, no database."""
from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

from ml.pipelines.forecasting import CustomerForecaster
from ml.pipelines.forecasting.btyd import BetaGeoModel, GammaGammaModel, ParetoNBDModel
from ml.pipelines.forecasting.candidates import CandidateFit, Workspace
from ml.pipelines.forecasting.features import day_number
from ml.pipelines.forecasting.intervals import RatioQuantiles, SpendBand
from ml.pipelines.forecasting.models import PlattCalibrator, PolynomialRidge, SubsampledSVR
from ml.pipelines.recommendation import Recommender
from ml.pipelines.recommendation.history import build_history
from ml.pipelines.recommendation.scorers import Scorer
from ml.pipelines.segmentation import CustomerSegmenter
from tests import shapes

SHAPE = shapes.business(n_customers=120, seed=3)
RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 4))
Y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + RNG.normal(scale=0.1, size=200)
P = np.clip(RNG.random(200), 0.01, 0.99)
COUNTS = RNG.poisson(3.0, 200).astype(float)


def _btyd_inputs():
    x = RNG.poisson(2.0, 300).astype(float)
    T = RNG.uniform(50, 200, 300)
    return x, np.where(x > 0, RNG.uniform(0, 1, 300) * T, 0.0), T


def _fits():
    """(model, fit) pairs: the constructed model and a call that fits it and returns the result."""
    s = SHAPE
    x, t_x, T = _btyd_inputs()
    ws = Workspace(s.interactions, s.as_of)
    return {
        "CustomerSegmenter": (CustomerSegmenter(horizon_days=60),
                              lambda m: m.fit(s.interactions, s.products, s.customers, s.as_of)),
        "CustomerForecaster": (CustomerForecaster(horizon_days=60),
                               lambda m: m.fit(s.interactions, s.as_of)),
        "Recommender": (Recommender(horizon_days=60), lambda m: m.fit(s.interactions, s.products, s.as_of)),
        "CandidateFit": (CandidateFit(60), lambda m: m.fit(ws, day_number(s.as_of))),
        "Scorer": (Scorer(), lambda m: m.fit(build_history(s.interactions, s.products, s.as_of))),
        "SubsampledSVR": (SubsampledSVR(max_rows=100), lambda m: m.fit(X, Y)),
        "PolynomialRidge": (PolynomialRidge(cv_rows=100), lambda m: m.fit(X, Y)),
        "PlattCalibrator": (PlattCalibrator(), lambda m: m.fit(P, RNG.random(200) < P)),
        "RatioQuantiles": (RatioQuantiles(), lambda m: m.fit(COUNTS + 0.5, COUNTS)),
        "SpendBand": (SpendBand(), lambda m: m.fit(COUNTS * 20, COUNTS, COUNTS * 0.5, COUNTS * 2, COUNTS * 21)),
        "BetaGeoModel": (BetaGeoModel(), lambda m: m.fit(x, t_x, T)),
        "ParetoNBDModel": (ParetoNBDModel(), lambda m: m.fit(x, t_x, T)),
        "GammaGammaModel": (GammaGammaModel(), lambda m: m.fit(x[x > 0], RNG.gamma(5.0, 10.0, int((x > 0).sum())))),
    }


@pytest.mark.parametrize("name", list(_fits()))
def test_model_constructor_only_stores_its_parameters(name):
    model, _ = _fits()[name]

    signature = inspect.signature(type(model).__init__).parameters.values()
    params = [p.name for p in signature if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]

    assert sorted(vars(model)) == sorted(params)


@pytest.mark.parametrize("name", list(_fits()))
def test_model_fit_returns_itself_and_learns_only_attributes_ending_in_underscore(name):
    model, fit = _fits()[name]
    before = set(vars(model))

    fitted = fit(model)

    assert fitted is model
    learned = set(vars(model)) - before
    assert learned and all(a.endswith("_") or a.startswith("_") for a in learned), sorted(learned)
    assert any(a.endswith("_") and not a.startswith("_") for a in learned)


def test_model_fit_leaves_its_input_frames_unchanged():
    s = SHAPE
    copies = [s.interactions.copy(), s.products.copy(), s.customers.copy()]

    CustomerSegmenter(horizon_days=60).fit(s.interactions, s.products, s.customers, s.as_of)
    CustomerForecaster(horizon_days=60).fit(s.interactions, s.as_of)
    Recommender(horizon_days=60).fit(s.interactions, s.products, s.as_of)

    for original, copy in zip((s.interactions, s.products, s.customers), copies):
        pd.testing.assert_frame_equal(original, copy)

