"""BTYD formulas against published values, and parameter recovery on simulated data."""

import numpy as np
import pytest

from ml.pipelines.forecasting.btyd import (
    BetaGeoModel,
    GammaGammaModel,
    ParetoNBDModel,
    simulate_bg_nbd,
    simulate_pareto_nbd,
)

# Fader, Hardie & Lee (2005), "Counting your customers the easy way", CDNOW sample, weeks.
CDNOW_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def _bgnbd(params):
    m = BetaGeoModel()
    m.params_ = dict(params)
    return m


def test_bgnbd_conditional_expectation_matches_paper_example():
    # given: the paper's worked example, x = 2, t_x = 30.43, T = 38.86 weeks
    m = _bgnbd(CDNOW_BGNBD)
    # when: expected purchases in the next 39 weeks
    e = m.conditional_expected_purchases(39, np.array([2.0]), np.array([30.43]), np.array([38.86]))
    # then: 1.226, as published
    assert e[0] == pytest.approx(1.226, abs=1e-3)


def test_bgnbd_no_repeat_customer_is_certainly_alive_and_probabilities_are_valid():
    m = _bgnbd(CDNOW_BGNBD)
    x, t_x, T = np.array([0.0, 5.0, 5.0]), np.array([0.0, 30.0, 5.0]), np.array([38.0, 38.0, 38.0])
    alive = m.probability_alive(x, t_x, T)
    p0 = m.probability_no_purchase(13, x, t_x, T)
    assert alive[0] == 1.0
    assert alive[2] < alive[1]  # same frequency, longer silence -> less likely alive
    assert np.all((p0 >= 0) & (p0 <= 1))


def test_bgnbd_heavy_buyer_expectation_stays_finite():
    # The textbook 2F1 overflows for large x; the Euler form must not.
    m = _bgnbd({"r": 1.43, "alpha": 25.6, "a": 0.04, "b": 12.0})
    e = m.conditional_expected_purchases(365, np.array([300.0]), np.array([360.0]), np.array([365.0]))
    assert np.isfinite(e[0]) and 200 < e[0] < 400


def test_bgnbd_recovers_parameters_from_simulated_data():
    T = np.random.default_rng(1).uniform(26, 52, 20_000)
    x, t_x, T = simulate_bg_nbd(20_000, T=T, random_state=3, **CDNOW_BGNBD)
    fitted = BetaGeoModel().fit(x, t_x, T).params_
    for k, v in CDNOW_BGNBD.items():
        assert fitted[k] == pytest.approx(v, rel=0.15), k


def test_bgnbd_fit_maximises_the_likelihood():
    T = np.random.default_rng(2).uniform(26, 52, 5_000)
    x, t_x, T = simulate_bg_nbd(5_000, T=T, random_state=4, **CDNOW_BGNBD)
    m = BetaGeoModel().fit(x, t_x, T)
    at_truth = BetaGeoModel.log_likelihood(list(CDNOW_BGNBD.values()), x, t_x, T).sum()
    assert m.log_likelihood_ >= at_truth - 1e-6


PARETO = {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.66}


def test_paretonbd_recovers_parameters_from_simulated_data():
    T = np.random.default_rng(1).uniform(26, 52, 20_000)
    x, t_x, T = simulate_pareto_nbd(20_000, T=T, random_state=3, **PARETO)
    fitted = ParetoNBDModel().fit(x, t_x, T).params_
    assert fitted["r"] == pytest.approx(PARETO["r"], rel=0.15)
    assert fitted["alpha"] == pytest.approx(PARETO["alpha"], rel=0.15)
    # s and beta are weakly identified separately; their ratio (the mean dropout rate) is not.
    assert fitted["s"] / fitted["beta"] == pytest.approx(PARETO["s"] / PARETO["beta"], rel=0.2)


def test_paretonbd_conditional_quantities_match_monte_carlo():
    # given: posterior by importance sampling from the prior (independent of the formulas)
    m = ParetoNBDModel()
    m.params_ = dict(PARETO)
    rng = np.random.default_rng(0)
    n = 1_000_000
    lam, mu = rng.gamma(PARETO["r"], 1 / PARETO["alpha"], n), rng.gamma(PARETO["s"], 1 / PARETO["beta"], n)
    x, t_x, T, t = 2.0, 30.0, 38.86, 20.0
    w_alive = lam**x * np.exp(-(lam + mu) * T)
    w_dead = lam**x * mu / (lam + mu) * (np.exp(-(lam + mu) * t_x) - np.exp(-(lam + mu) * T))
    total = (w_alive + w_dead).sum()
    p_alive = w_alive.sum() / total
    p0 = (w_dead.sum() + (w_alive * (mu / (lam + mu) + lam / (lam + mu) * np.exp(-(lam + mu) * t))).sum()) / total
    expected = (w_alive * lam / mu * (1 - np.exp(-mu * t))).sum() / total
    args = np.array([x]), np.array([t_x]), np.array([T])
    # then
    assert m.probability_alive(*args)[0] == pytest.approx(p_alive, abs=0.01)
    assert m.probability_no_purchase(t, *args)[0] == pytest.approx(p0, abs=0.01)
    assert m.conditional_expected_purchases(t, *args)[0] == pytest.approx(expected, rel=0.03)


# Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves", CDNOW spend model.
CDNOW_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}


def test_gamma_gamma_conditional_value_is_a_weighted_average_of_prior_and_own_mean():
    m = GammaGammaModel()
    m.params_ = dict(CDNOW_GG)
    prior = m.population_mean()
    assert prior == pytest.approx(6.25 * 15.44 / 2.74)
    v = m.conditional_expected_value(np.array([0.0, 1.0, 50.0]), np.array([0.0, 100.0, 100.0]))
    assert v[0] == pytest.approx(prior)
    assert prior < v[1] < v[2] < 100  # more purchases -> closer to the customer's own mean


def test_gamma_gamma_recovers_parameters_from_simulated_data():
    rng = np.random.default_rng(0)
    n = 20_000
    nu = rng.gamma(CDNOW_GG["q"], 1 / CDNOW_GG["gamma"], n)
    x = rng.integers(1, 10, n).astype(float)
    m = rng.gamma(CDNOW_GG["p"] * x, 1 / nu) / x
    fitted = GammaGammaModel().fit(x, m).params_
    for k, v in CDNOW_GG.items():
        assert fitted[k] == pytest.approx(v, rel=0.1), k
