"""Phase identification on cases whose answer is known by construction, and the MILP against brute force.

    transformer ──┬── phase A: customers 0, 3   (references: the transformer's three phase voltages)
                  ├── phase B: customers 1, 4
                  └── phase C: customers 2, 5
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from controllers.identification import (
    Assignment,
    Method,
    agree,
    confusion_matrix,
    identify_by_correlation,
    identify_by_energy,
    score,
)
from controllers.identification.assignment import NOT_ASSIGNED

TRUE_PHASE = np.array([0, 1, 2, 0, 1, 2])


def _hand_case(seed: int = 3, n_t: int = 96, noise_v: float = 0.05) -> tuple[np.ndarray, ...]:
    """Loads per customer; each phase's voltage falls by 0.8 V/kW of its own load (transformer) and each customer
    by a further 1.5 V/kW of its own; MV voltage drifts alike on all phases (common mode)."""
    rng = np.random.default_rng(seed)
    load_kw = rng.gamma(2.0, 0.5, size=(n_t, TRUE_PHASE.size))
    phase_kw = np.stack([load_kw[:, k == TRUE_PHASE].sum(axis=1) for k in range(3)], axis=1)
    mv = 240.0 + np.cumsum(rng.normal(0, 0.3, n_t))[:, None]
    ref_v = mv - 0.8 * phase_kw
    v = ref_v[:, TRUE_PHASE] - 1.5 * load_kw + rng.normal(0, noise_v, size=load_kw.shape)
    return v, ref_v + rng.normal(0, noise_v, size=ref_v.shape), load_kw, phase_kw


def test_correlation_finds_the_constructed_phases() -> None:
    v, ref_v, _, _ = _hand_case()
    a = identify_by_correlation(v, ref_v)
    np.testing.assert_array_equal(a.phase, TRUE_PHASE)
    assert (a.confidence > 0.9).all()


def test_energy_balance_finds_the_constructed_phases_and_equals_brute_force() -> None:
    _, _, load_kw, phase_kw = _hand_case()
    rng = np.random.default_rng(5)
    ref_p = phase_kw * (1 + 0.02 * rng.standard_normal(phase_kw.shape))  # losses and meter error
    p = np.full((load_kw.shape[0], load_kw.shape[1], 3), np.nan)
    p[:, :, 0] = load_kw
    a = identify_by_energy(p, np.ones(load_kw.shape[1], dtype=int), ref_p)
    best = min(itertools.product(range(3), repeat=TRUE_PHASE.size),
               key=lambda x: sum(np.abs(ref_p[:, k] - load_kw[:, np.array(x) == k].sum(axis=1)).sum()
                                 for k in range(3)))
    np.testing.assert_array_equal(a.phase, np.array(best))
    np.testing.assert_array_equal(a.phase, TRUE_PHASE)


def test_energy_balance_lets_a_three_phase_customer_take_any_rotation() -> None:
    _, _, load_kw, phase_kw = _hand_case()
    three = np.abs(np.random.default_rng(9).normal(1.0, 0.3, size=(load_kw.shape[0], 3)))
    rotation = (2, 0, 1)  # terminal j on phase rotation[j]
    ref_p = phase_kw + three[:, np.argsort(rotation)]
    p = np.full((load_kw.shape[0], load_kw.shape[1] + 1, 3), np.nan)
    p[:, :-1, 0] = load_kw
    p[:, -1, :] = three
    a = identify_by_energy(p, np.array([1] * load_kw.shape[1] + [3]), ref_p)
    np.testing.assert_array_equal(a.phase[:-1], TRUE_PHASE)
    assert a.phase[-1] == NOT_ASSIGNED and a.reason[-1] == "three-phase"


def test_a_customer_without_voltage_is_reported_not_assigned() -> None:
    v, ref_v, _, _ = _hand_case()
    v[:, 4] = np.nan
    v[5:, 5] = np.nan
    a = identify_by_correlation(v, ref_v)
    assert a.phase[4] == NOT_ASSIGNED and a.reason[4] == "no voltage data"
    assert a.phase[5] == NOT_ASSIGNED and a.reason[5] == "only 5 interval(s) with voltage; at least 8 needed"
    np.testing.assert_array_equal(a.phase[:4], TRUE_PHASE[:4])


def test_a_reference_too_noisy_to_label_the_clusters_flags_everyone() -> None:
    v, ref_v, _, _ = _hand_case()
    noisy = ref_v.mean(axis=1, keepdims=True) + np.random.default_rng(1).normal(0, 5.0, size=ref_v.shape)
    a = identify_by_correlation(v, noisy)
    assert a.flagged().all()


def test_agreement_scores_and_confusion() -> None:
    def a(method: Method, phase: list[int], conf: list[float]) -> Assignment:
        return Assignment(method=method, phase=np.array(phase), confidence=np.array(conf), scores=np.zeros((3, 3)),
                          reason=("", "", ""))

    both = agree(a(Method.CORRELATION, [0, 1, 2], [0.5, 0.999, 0.7]), a(Method.ENERGY, [0, 2, 2], [0.995, 1.0, 0.4]))
    np.testing.assert_array_equal(both.phase, [0, NOT_ASSIGNED, 2])
    np.testing.assert_allclose(both.confidence, [0.995, 0.0, 0.7])
    assert both.reason[1] == "correlation says B, energy says C"
    s = score(both, np.array([0, 1, 1]))
    assert s["accuracy"] == pytest.approx(1 / 3) and s["accuracy_of_high_confidence"] == 1.0
    assert s["high_confidence_share"] == pytest.approx(1 / 3)
    np.testing.assert_array_equal(confusion_matrix(both, np.array([0, 1, 1])),
                                  [[1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]])


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"voltages have shape \(4, 2\) and references \(4, 2\)"):
        identify_by_correlation(np.zeros((4, 2)), np.zeros((4, 2)))
