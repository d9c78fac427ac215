"""The smart-meter model: interval means by hand, the class as the error bound, quantisation, gaps, seeds."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from twin.smart_meter import MeterModel, interval_means, measure


def test_interval_means_by_hand() -> None:
    values = np.arange(10.0)[:, None]
    np.testing.assert_allclose(interval_means(values, step_s=60, resolution_s=180), [[1.0], [4.0], [7.0]])
    with pytest.raises(ValueError, match="meter resolution 90 s is not a whole multiple of the step 60 s"):
        interval_means(values, step_s=60, resolution_s=90)


@pytest.mark.parametrize("accuracy_class", [0.2, 0.5, 1.0])
def test_errors_stay_within_the_class_and_spread_as_a_third_of_it(accuracy_class: float) -> None:
    true = np.full((20_000, 5), 230.0)
    model = MeterModel(accuracy_class=accuracy_class, quantum_v=0.0, seed=4)
    rel = measure(true, model=model, stream=0, voltage=True) / true - 1.0
    assert np.abs(rel).max() <= accuracy_class / 100 + 1e-12
    assert rel.std() == pytest.approx(accuracy_class / 300, rel=0.05)


def test_quantisation_gaps_and_seeds() -> None:
    true = np.random.default_rng(0).uniform(220, 240, size=(2000, 4))
    model = MeterModel(accuracy_class=0.5, quantum_v=1.0, missing_share=0.1, seed=2)
    a = measure(true, model=model, stream=0, voltage=True)
    finite = a[np.isfinite(a)]
    np.testing.assert_allclose(finite, np.round(finite))
    assert np.isnan(a).mean() == pytest.approx(0.1, abs=0.02)
    np.testing.assert_array_equal(a, measure(true, model=model, stream=0, voltage=True))
    assert not np.array_equal(np.nan_to_num(a), np.nan_to_num(measure(true, model=model, stream=1, voltage=True)))


def test_an_unknown_class_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"accuracy class 0.3 is not one of 0.2, 0.5, 1.0, 2.0"):
        MeterModel(accuracy_class=0.3)
