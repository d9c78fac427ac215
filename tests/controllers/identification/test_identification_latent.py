"""The unmetered load as latent loads: ``latent.latent_misfit`` and ``latent.refine_by_latent_load`` on a feeder
written out by hand.

Twelve customers on a random sensitivity matrix (a load drops its own phase most), six of them unmetered, each
drawing its own random load (not a share of its phase's: the even spread of ``unmetered`` is wrong here). The
metered customers' voltages are built from the drops written out term by term, plus meter noise.
"""

from __future__ import annotations

import numpy as np
import pytest

from controllers.identification.assignment import NOT_ASSIGNED
from controllers.identification.latent import latent_misfit, refine_by_latent_load

NOISE_V = 0.05
NOISY_V = 3.0


def _feeder(seed: int = 5, noise_v: float = NOISE_V) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, n_t = 12, 120
    sensitivity = rng.uniform(0.0, 0.2, size=(n, 3, n, 3)) + np.eye(3)[None, :, None, :] * rng.uniform(
        0.5, 1.5, size=(n, 1, n, 1))
    phase = np.array([0, 1, 2, 0, 1, 2, 0, 0, 1, 2, 2, 1])
    metered = np.arange(n) < 6
    load = rng.uniform(0.0, 3.0, size=(n_t, n))
    ref_v = 230.0 + rng.normal(0.0, 1.0, size=(n_t, 3))
    ref_p = np.stack([load[:, phase == f].sum(axis=1) for f in range(3)], axis=1)
    drop = np.einsum("ikj,tj->tik", sensitivity[:, :, np.arange(n), phase], load)  # [t, i, k]
    v = np.full((n_t, n), np.nan)
    rows = np.flatnonzero(metered)
    v[:, rows] = ref_v[:, phase[rows]] - drop[:, rows, phase[rows]] + rng.normal(0.0, noise_v, (n_t, rows.size))
    return {"v": v, "ref_v": ref_v, "p": np.where(metered, load, np.nan), "ref_p": ref_p, "phase": phase,
            "metered": metered, "sensitivity": sensitivity}


def test_every_customer_metered_the_misfit_is_the_centred_residual() -> None:
    f = _feeder()
    rng = np.random.default_rng(1)
    n_t, n = f["v"].shape
    phase = f["phase"]
    load = rng.uniform(0.0, 3.0, size=(n_t, n))
    v = f["ref_v"][:, phase] - np.einsum("ij,tj->ti", f["sensitivity"][np.arange(n), phase][:, np.arange(n), phase],
                                         load) + 0.3  # a constant offset at every meter: the constants take it
    noise = rng.normal(0.0, NOISE_V, (n_t, n))
    everyone = np.ones(n, dtype=bool)
    ref_p = np.stack([load[:, phase == k].sum(axis=1) for k in range(3)], axis=1)
    misfit = latent_misfit(v + noise, f["ref_v"], load, ref_p, phase, everyone, f["sensitivity"])
    centred = noise - noise.mean(axis=0)
    np.testing.assert_allclose(misfit, float((centred * centred).sum()), rtol=1e-9)


def test_the_truth_fits_within_the_noise_and_wrong_phases_do_not() -> None:
    f = _feeder()
    args = (f["v"], f["ref_v"], f["p"], f["ref_p"])
    truth = np.where(f["metered"], f["phase"], NOT_ASSIGNED)
    n_obs = f["v"].shape[0] * int(f["metered"].sum())
    at_truth = latent_misfit(*args, truth, f["metered"], f["sensitivity"])
    # the latent loads and the constants can only lower the residual below the noise's own sum of squares
    assert at_truth < 1.05 * n_obs * NOISE_V**2
    for i in range(6):
        for k in range(3):
            if k == truth[i]:
                continue
            wrong = truth.copy()
            wrong[i] = k
            assert latent_misfit(*args, wrong, f["metered"], f["sensitivity"]) > 3 * at_truth


def test_the_descent_reaches_the_truth_from_wrong_phases() -> None:
    f = _feeder()
    truth = np.where(f["metered"], f["phase"], NOT_ASSIGNED)
    start = truth.copy()
    start[[0, 1, 4]] = [2, 0, 2]
    found, misfit = refine_by_latent_load(f["v"], f["ref_v"], f["p"], f["ref_p"], start, f["metered"],
                                          f["sensitivity"])
    np.testing.assert_array_equal(found, truth)
    assert misfit == latent_misfit(f["v"], f["ref_v"], f["p"], f["ref_p"], truth, f["metered"], f["sensitivity"])
    # a budget of one move stops short
    one, _ = refine_by_latent_load(f["v"], f["ref_v"], f["p"], f["ref_p"], start, f["metered"], f["sensitivity"],
                                   moves=1)
    assert (one != truth).sum() == 2


def test_the_latent_fit_changes_only_flagged_customers_and_keeps_them_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    # a stand-in for the descent that moves every metered customer, the movable ones or not: only those below
    # high confidence may take its phase, and they stay flagged; every other answer is as without it
    import controllers.identification.correlation as correlation

    f = _feeder(noise_v=NOISY_V)
    kwargs = {"p_kw": f["p"], "ref_p_kw": f["ref_p"], "sensitivity": f["sensitivity"]}
    monkeypatch.setattr(correlation, "refine_by_latent_load", lambda *a, **k: (a[4], 0.0))
    before = correlation.identify_by_correlation(f["v"], f["ref_v"], **kwargs)
    monkeypatch.setattr(correlation, "refine_by_latent_load",
                        lambda *a, **k: (np.where(a[4] >= 0, (a[4] + 1) % 3, a[4]), 0.0))
    after = correlation.identify_by_correlation(f["v"], f["ref_v"], **kwargs)
    was_flagged = before.flagged()
    changed = after.phase != before.phase
    assert changed.any() and not (changed & ~was_flagged).any()
    assert after.flagged()[changed].all()
    assert all("latent loads" in after.reason[i] for i in np.flatnonzero(changed))
    keep = ~changed
    np.testing.assert_array_equal(after.confidence[keep], before.confidence[keep])
    assert (~was_flagged[f["metered"]]).any()  # some customers were high-confidence and kept
