"""BG/NBD's expected purchases where both hypergeometric forms overflow: the integral over p gives the
closed form's value where that one is finite, and a finite, plausible value where it is not."""
import numpy as np

from ml.pipelines.forecasting.btyd import BetaGeoModel, _expected_given_alive


def test_integral_equals_the_closed_form_where_that_is_finite():
    model = BetaGeoModel(random_state=0)
    model.params_ = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # FHL 2005's CDNOW estimates
    x, t_x, T = np.array([0.0, 2.0, 7.0]), np.array([0.0, 30.4, 35.0]), np.array([38.9, 38.9, 38.9])
    alive = model.probability_alive(x, t_x, T)

    closed = model.conditional_expected_purchases(39.0, x, t_x, T)
    by_integral = [_expected_given_alive(39.0, 0.243 + xi, 4.414 + Ti, 0.793, 2.426 + xi) for xi, Ti in zip(x, T)]

    np.testing.assert_allclose(closed, np.array(by_integral) * alive, rtol=1e-6)


def test_far_out_parameters_give_the_steady_rate_not_nan():
    # r and alpha huge (the rate is nearly the same for everyone, r / alpha a day), a near 0 (nobody drops out)
    model = BetaGeoModel(random_state=0)
    model.params_ = {"r": 12575.3, "alpha": 162754.8, "a": 4.0e-05, "b": 48.96}
    x, t_x, T = np.array([21.0, 14.0]), np.array([269.0, 265.0]), np.array([272.0, 274.0])

    expected = model.conditional_expected_purchases(90, x, t_x, T)

    assert np.all(np.isfinite(expected))
    np.testing.assert_allclose(expected, 90 * (12575.3 + x) / (162754.8 + T) * model.probability_alive(x, t_x, T),
                               rtol=0.01)
