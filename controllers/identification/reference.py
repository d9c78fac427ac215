"""The transformer's phase voltages as the voltage tests' reference, with its meter's noise projected out.

The voltage tests compare a customer's meter voltage with the transformer's three phase voltages; what tells the
phases apart is their imbalance, V_k − V_j, a few tenths of a volt. A class-0.2 transformer meter reads each
phase with an error of σ ≈ 0.15 V per interval (``twin/smart_meter.py``): as large as the imbalance itself, on
every interval. The imbalance, though, is the transformer's (and the cables' behind it) drop under its phase
loads, which the same meter measures within 0.07 % of the power. So each phase's voltage less the mean of the
three (the common mode: the MV voltage and the tap, kept as measured) is regressed on a constant and the three
phase powers, and the fit replaces it: V̂_k = mean of the three + fit_k. With four parameters fitted over the
period, almost none of the meter's noise is left in the imbalance.

What the powers do not explain is given up with the noise: an imbalance of the MV voltage itself (the regression
keeps its mean in the constant) and drops that are not linear in the transformer's active power.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["MIN_INTERVALS_PER_PARAMETER", "denoised_reference"]

log = logging.getLogger(__name__)

MIN_INTERVALS_PER_PARAMETER = 10
"""Intervals with all three voltages and powers needed per fitted parameter (4); with fewer the measured voltages
are returned unchanged."""


def denoised_reference(ref_v_v: np.ndarray, ref_p_kw: np.ndarray) -> np.ndarray:
    """[t, φ] the transformer's phase voltages (V) whose imbalance is the part explained by its phase powers
    ``ref_p_kw[t, φ]`` (kW): the mean of the three as measured plus each phase's fitted difference to it. Intervals
    without all three powers keep their measured voltages (counted in the log); NaN voltages stay NaN. Raises
    ValueError on mismatched shapes."""
    if ref_v_v.ndim != 2 or ref_v_v.shape[1] != 3 or ref_p_kw.shape != ref_v_v.shape:
        raise ValueError(f"transformer voltages {ref_v_v.shape} and powers {ref_p_kw.shape}: expected [t, 3] both")
    complete = np.isfinite(ref_v_v).all(axis=1) & np.isfinite(ref_p_kw).all(axis=1)
    n_params = 1 + ref_p_kw.shape[1]
    if complete.sum() < MIN_INTERVALS_PER_PARAMETER * n_params:
        log.warning("transformer reference not denoised: %d interval(s) with all three voltages and powers, at "
                    "least %d needed; the measured voltages are used", int(complete.sum()),
                    MIN_INTERVALS_PER_PARAMETER * n_params)
        return ref_v_v.copy()
    common = ref_v_v.mean(axis=1, keepdims=True)
    design = np.column_stack([np.ones(ref_v_v.shape[0]), np.where(np.isfinite(ref_p_kw), ref_p_kw, 0.0)])
    coefficients = np.linalg.lstsq(design[complete], (ref_v_v - common)[complete], rcond=None)[0]
    out = np.where(complete[:, None], common + design @ coefficients, ref_v_v)
    kept = int((~complete & np.isfinite(ref_v_v).any(axis=1)).sum())
    if kept:
        log.info("transformer reference: %d interval(s) without all three powers or voltages keep the measured "
                 "voltages", kept)
    return np.asarray(out)
