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
from controllers.identification.assignment import NOT_ASSIGNED, NOT_IDENTIFIABLE
from controllers.identification.identifiability import collinear_groups, compensated_deltas

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
    # customer 1: the methods contradict each other; energy's C (1.0 against 0.999) is the best guess, with the
    # (1 − 0.999)/2 correlation leaves it, and not identifiable
    np.testing.assert_array_equal(both.phase, [0, 2, 2])
    # odds multiply: 2·0.5·0.995 / (2·0.5·0.995 + 0.5·0.005), and 2·0.7·0.4 / (2·0.7·0.4 + 0.3·0.6)
    np.testing.assert_allclose(both.confidence, [0.995 / 0.9975, 0.0005, 0.56 / 0.74])
    assert both.reason[1] == f"{NOT_IDENTIFIABLE}: correlation says B, energy says C"
    np.testing.assert_array_equal(both.flagged(), [False, True, True])
    s = score(both, np.array([0, 1, 1]))
    assert s["accuracy"] == pytest.approx(1 / 3) and s["accuracy_of_high_confidence"] == 1.0
    assert s["high_confidence_share"] == pytest.approx(1 / 3)
    np.testing.assert_array_equal(confusion_matrix(both, np.array([0, 1, 1])),
                                  [[1, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]])


def test_agreement_uses_one_method_where_the_other_cannot_tell() -> None:
    cannot = f"{NOT_IDENTIFIABLE}: consumption collinear with #2"
    first = Assignment(method=Method.CORRELATION, phase=np.array([1, 0]), confidence=np.array([0.999, 0.9]),
                       scores=np.zeros((2, 3)), reason=("", ""))
    second = Assignment(method=Method.ENERGY, phase=np.array([2, NOT_ASSIGNED]), confidence=np.array([0.0, 0.0]),
                        scores=np.zeros((2, 3)), reason=(cannot, "no power data"))
    both = agree(first, second)
    np.testing.assert_array_equal(both.phase, [1, 0])
    np.testing.assert_allclose(both.confidence, [0.999, 0.9])
    assert both.reason[0] == f"correlation alone (energy: {cannot})"
    # a method's own "not identifiable" answer is never high-confidence, whatever its number says
    assert second.flagged().all() and not first.flagged()[0]


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"voltages have shape \(4, 2\) and references \(4, 2\)"):
        identify_by_correlation(np.zeros((4, 2)), np.zeros((4, 2)))


def test_customers_of_one_scaled_profile_on_two_phases_are_not_identifiable_by_energy() -> None:
    """Customers 0 and 1 follow one profile (1 at scale 1.0, 0 at 1.0 too): swapping them between A and B leaves
    the balance exactly as it is, so energy must not be confident about either; the rest stay identified."""
    _, _, load_kw, _ = _hand_case()
    load_kw = load_kw.copy()
    load_kw[:, 1] = load_kw[:, 0]
    phase_kw = np.stack([load_kw[:, k == TRUE_PHASE].sum(axis=1) for k in range(3)], axis=1)
    p = np.zeros((load_kw.shape[0], 6, 3))
    p[:, :, 0] = load_kw
    a = identify_by_energy(p, np.ones(6, dtype=int), phase_kw, names=[f"c{i}" for i in range(6)])
    assert a.flagged()[:2].all() and a.confidence[:2].max() == 0.0
    assert a.reason[0].startswith(NOT_IDENTIFIABLE) and "c1" in a.reason[0] and "c0" in a.reason[1]
    np.testing.assert_array_equal(a.phase[2:], TRUE_PHASE[2:])
    assert not a.flagged()[2:].any()


def test_compensated_deltas_equal_brute_force_over_a_move_and_one_more() -> None:
    rng = np.random.default_rng(5)
    series = rng.gamma(2.0, 0.5, size=(40, 5))
    phase = np.array([0, 1, 2, 0, 1])
    residual = rng.normal(0, 0.3, size=(40, 3))
    base = np.abs(residual).sum()
    delta = compensated_deltas(residual, series, phase)
    for i, target in itertools.product(range(5), range(3)):
        if target == phase[i]:
            assert delta[i, target] == 0.0
            continue
        moved = residual.copy()
        moved[:, phase[i]] += series[:, i]
        moved[:, target] -= series[:, i]
        best = np.abs(moved).sum() - base
        for j, other in itertools.product(range(5), range(3)):
            if j != i and other != phase[j]:
                twice = moved.copy()
                twice[:, phase[j]] += series[:, j]
                twice[:, other] -= series[:, j]
                best = min(best, np.abs(twice).sum() - base)
        assert delta[i, target] == pytest.approx(best)


def test_collinear_groups_link_scaled_copies_only() -> None:
    rng = np.random.default_rng(2)
    shapes = rng.gamma(2.0, 0.5, size=(96, 3))
    series = np.stack([shapes[:, 0], 2 * shapes[:, 0], shapes[:, 1], 0.5 * shapes[:, 0] + 0.01, shapes[:, 2]], axis=1)
    group = collinear_groups(series)
    assert group[0] == group[1] == group[3] >= 0 and group[2] == group[4] == -1
