"""An identified phase per customer with its confidence, and the measures of how right it is."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

__all__ = ["HIGH_CONFIDENCE", "NOT_ASSIGNED", "Assignment", "Method", "agree", "confusion_matrix", "score"]

NOT_ASSIGNED = -1
"""Phase code of a customer left unassigned (no data, or confidence below the threshold)."""
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
        """Customers that are not assigned or below ``threshold``: to be checked in the field, not guessed."""
        return (self.phase == NOT_ASSIGNED) | (self.confidence < threshold)


def agree(first: Assignment, second: Assignment) -> Assignment:
    """Both methods: assigned where both assign the same phase, with the larger of the two confidences;
    where they disagree the customer is not assigned (reason names both)."""
    same = (first.phase == second.phase) & (first.phase != NOT_ASSIGNED)
    phase = np.where(same, first.phase, NOT_ASSIGNED)
    confidence = np.where(same, np.maximum(first.confidence, second.confidence), 0.0)
    reasons = []
    for i in range(phase.size):
        if same[i]:
            reasons.append("")
        elif first.phase[i] == NOT_ASSIGNED or second.phase[i] == NOT_ASSIGNED:
            reasons.append("; ".join(r for r in (first.reason[i], second.reason[i]) if r))
        else:
            reasons.append(f"{first.method} says {'ABC'[first.phase[i]]}, {second.method} says "
                           f"{'ABC'[second.phase[i]]}")
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
