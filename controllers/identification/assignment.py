"""An identified phase per customer with its confidence, and the measures of how right it is."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

__all__ = ["HIGH_CONFIDENCE", "NOT_ASSIGNED", "NOT_IDENTIFIABLE", "Assignment", "Method", "abstains", "agree",
           "confusion_matrix", "score"]

NOT_ASSIGNED = -1
"""Phase code of a customer left unassigned (no data, or confidence below the threshold)."""
NOT_IDENTIFIABLE = "not identifiable from these data"
"""How a reason starts when the data cannot tell a customer's phase (and the method's phase is only a guess)."""
HIGH_CONFIDENCE = 0.99
"""Confidence at or above which an assignment counts as high-confidence (calibrated in the benchmark)."""


class Method(StrEnum):
    CORRELATION = "correlation"
    ENERGY = "energy"
    BOTH = "both"
    """Both methods; a customer is assigned where they agree, with the larger confidence."""


@dataclass(frozen=True)
class Assignment:
    """``phase[i]`` (0, 1, 2 = A, B, C, or NOT_ASSIGNED) of single-phase customer i, ``confidence[i]`` in [0, 1]
    (the probability, under the method's noise model, that the phase is right), ``reason[i]`` why a customer
    is not assigned (empty when assigned) and ``scores[i, φ]``, the method's evidence for each phase."""

    method: Method
    phase: np.ndarray
    confidence: np.ndarray
    scores: np.ndarray
    reason: tuple[str, ...]

    def flagged(self, threshold: float = HIGH_CONFIDENCE) -> np.ndarray:
        """Customers that are not assigned, not identifiable, or below ``threshold``: to be checked in the field,
        not guessed."""
        identifiable = np.array([not r.startswith(NOT_IDENTIFIABLE) for r in self.reason], dtype=bool)
        return (self.phase == NOT_ASSIGNED) | (self.confidence < threshold) | ~identifiable


def abstains(assignment: Assignment, i: int) -> bool:
    """Whether the method says nothing about customer i: not assigned, or not identifiable from its data."""
    return bool(assignment.phase[i] == NOT_ASSIGNED or assignment.reason[i].startswith(NOT_IDENTIFIABLE))


def agree(first: Assignment, second: Assignment) -> Assignment:
    """Both methods, as independent evidence: a method of confidence c for its phase gives each other phase
    (1 − c)/2, and the two methods' probabilities multiply (uniform prior). Where both assign the same phase,
    that phase with 2c₁c₂ / (2c₁c₂ + (1 − c₁)(1 − c₂)); where one abstains (not assigned, or "not identifiable
    from these data"), the other's phase and confidence, its reason naming the abstention; where they name
    different phases, the more probable of the two (c₁(1 − c₂) against c₂(1 − c₁)) as a best guess, "not
    identifiable from these data" (the methods contradict each other), with the probability the other method
    leaves it, (1 − c)/2 ≤ 1/2: never high confidence; where both abstain, both reasons, with a method's phase as
    a best guess where one has it (its confidence capped at 1/2), else not assigned."""
    n = first.phase.size
    phase = np.full(n, NOT_ASSIGNED)
    confidence = np.zeros(n)
    reasons = []
    for i in range(n):
        skip_first, skip_second = abstains(first, i), abstains(second, i)
        if not skip_first and not skip_second and first.phase[i] == second.phase[i]:
            c1, c2 = float(first.confidence[i]), float(second.confidence[i])
            phase[i] = first.phase[i]
            confidence[i] = 2 * c1 * c2 / max(2 * c1 * c2 + (1 - c1) * (1 - c2), 1e-300)
            reasons.append("")
        elif skip_first and skip_second:
            # a best guess where a method has one (flagged all the same: both reasons say why)
            guess = first if first.phase[i] != NOT_ASSIGNED else second
            phase[i], confidence[i] = guess.phase[i], min(float(guess.confidence[i]), 0.5)
            reasons.append("; ".join(f"{a.method}: {a.reason[i]}" for a in (first, second) if a.reason[i]))
        elif skip_first or skip_second:
            used, other = (second, first) if skip_first else (first, second)
            phase[i], confidence[i] = used.phase[i], used.confidence[i]
            reasons.append(f"{used.method} alone ({other.method}: {other.reason[i] or 'not assigned'})")
        else:
            c1, c2 = float(first.confidence[i]), float(second.confidence[i])
            first_wins = c1 * (1 - c2) >= c2 * (1 - c1)
            phase[i] = first.phase[i] if first_wins else second.phase[i]
            confidence[i] = min(c1, (1 - c2) / 2) if first_wins else min(c2, (1 - c1) / 2)
            reasons.append(f"{NOT_IDENTIFIABLE}: {first.method} says {'ABC'[first.phase[i]]}, {second.method} "
                           f"says {'ABC'[second.phase[i]]}")
    return Assignment(method=Method.BOTH, phase=phase, confidence=confidence,
                      scores=(first.scores + second.scores) / 2, reason=tuple(reasons))


def score(assignment: Assignment, truth: np.ndarray, *, threshold: float = HIGH_CONFIDENCE) -> dict[str, float]:
    """Accuracy (share of customers assigned the true phase, unassigned ones counting as wrong), the share
    assigned, the accuracy among the assigned, and among the high-confidence ones (calibration)."""
    assigned = assignment.phase != NOT_ASSIGNED
    right = assignment.phase == truth
    high = assigned & ~assignment.flagged(threshold)
    n = max(truth.size, 1)
    return {
        "customers": float(truth.size),
        "accuracy": float(right.sum() / n),
        "assigned_share": float(assigned.sum() / n),
        "accuracy_of_assigned": float(right[assigned].mean()) if assigned.any() else 1.0,
        "high_confidence_share": float(high.sum() / n),
        "accuracy_of_high_confidence": float(right[high].mean()) if high.any() else 1.0,
    }


def confusion_matrix(assignment: Assignment, truth: np.ndarray) -> np.ndarray:
    """[true phase A/B/C, identified A/B/C/not assigned] counts."""
    matrix = np.zeros((3, 4), dtype=int)
    for t, p in zip(truth, assignment.phase, strict=True):
        matrix[int(t), 3 if p == NOT_ASSIGNED else int(p)] += 1
    return matrix
