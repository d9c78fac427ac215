"""Phase identification: which phase each single-phase customer is on, from what its smart meter measured.

- ``correlation``: voltage correlation against the transformer's per-phase LV voltages, refined with the
  customers already assigned to each phase as further references (multi-reference correlation);
- ``reference``: the transformer's phase voltages with its meter's noise projected out (their imbalance fitted
  on its phase powers), the voltage tests' reference;
- ``energy``: the transformer's per-phase energy balanced by the customers' energies, an exact MILP over the
  assignments (HiGHS through OR-Tools MathOpt);
- ``sensitivity``, ``unmetered``, ``latent``: the feeder's voltage sensitivities and the drops they predict; with
  customers unmetered, the load nobody measured spread over estimated phases (``unmetered``) and, for the
  customers left below high confidence, fitted as latent non-negative loads (``latent``);
- ``assignment``: the result of either (a phase or none per customer, a confidence), the agreement of both,
  and the standard measures (accuracy, confusion matrix).

Decisions only: arrays in, an assignment out; reading and writing files is the app's (``phasetwin/cli/identify.py``).
"""

from __future__ import annotations

from controllers.identification.assignment import (
    HIGH_CONFIDENCE,
    Assignment,
    Method,
    agree,
    confusion_matrix,
    score,
)
from controllers.identification.correlation import identify_by_correlation
from controllers.identification.energy import identify_by_energy
from controllers.identification.identify import identify_phases
from controllers.identification.watch import PhaseChange, watch_phases

__all__ = [
    "HIGH_CONFIDENCE",
    "Assignment",
    "Method",
    "PhaseChange",
    "agree",
    "confusion_matrix",
    "identify_by_correlation",
    "identify_by_energy",
    "identify_phases",
    "score",
    "watch_phases",
]
