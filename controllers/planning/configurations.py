"""The 15 phase configurations of the re-phasing paper (eq. 1) and the feasibility rule (eq. 6c).

A configuration is an ordered tuple of distinct phases: terminal j of the customer goes to phase ``config[j]``.
The order is the authors' ``itertools.permutations`` order: A, B, C, AB, AC, BA, BC, CA, CB, ABC, ACB, BAC,
BCA, CAB, CBA. A customer keeps its number of phases, so single-phase customers have 3 feasible
configurations, two-phase customers 6 and three-phase customers 6.
"""

from __future__ import annotations

import itertools

import numpy as np

from twin.phase import Phase, connection_text, parse_connection

__all__ = [
    "CONFIGURATIONS",
    "configuration_index",
    "feasibility_matrix",
    "feasible_configurations",
    "initial_matrix",
    "parse_configuration",
    "relabelled",
]

CONFIGURATIONS: tuple[tuple[Phase, ...], ...] = tuple(
    perm for size in (1, 2, 3) for perm in itertools.permutations(tuple(Phase), size)
)
_INDEX = {config: i for i, config in enumerate(CONFIGURATIONS)}


def parse_configuration(text: str) -> tuple[Phase, ...]:
    """``"CAB"`` -> (C, A, B); raises ValueError naming the bad text (see ``twin.network.parse_connection``)."""
    return parse_connection(text)


def configuration_index(config: tuple[Phase, ...]) -> int:
    """Position of ``config`` in ``CONFIGURATIONS``; KeyError names it when it is not one of the 15."""
    try:
        return _INDEX[tuple(config)]
    except KeyError:
        raise KeyError(f"{connection_text(tuple(config))!r} is not one of the 15 phase configurations") from None


def feasible_configurations(n_phases: int) -> tuple[int, ...]:
    """Indices into ``CONFIGURATIONS`` of the configurations with ``n_phases`` phases."""
    if not 1 <= n_phases <= 3:
        raise ValueError(f"n_phases {n_phases} must be 1, 2 or 3")
    return tuple(i for i, config in enumerate(CONFIGURATIONS) if len(config) == n_phases)


def initial_matrix(initial: list[tuple[Phase, ...]]) -> np.ndarray:
    """B^init of eq. 2: [n_customers, 15] booleans, one True per row."""
    out = np.zeros((len(initial), len(CONFIGURATIONS)), dtype=bool)
    for i, config in enumerate(initial):
        out[i, configuration_index(config)] = True
    return out


def feasibility_matrix(initial: list[tuple[Phase, ...]]) -> np.ndarray:
    """B^feas of eq. 4: [n_customers, 15] booleans, True where the configuration has the customer's number of
    phases."""
    out = np.zeros((len(initial), len(CONFIGURATIONS)), dtype=bool)
    for i, config in enumerate(initial):
        out[i, list(feasible_configurations(len(config)))] = True
    return out


def relabelled(config: tuple[Phase, ...], relabelling: tuple[Phase, Phase, Phase]) -> tuple[Phase, ...]:
    """``config`` with every network phase p renamed ``relabelling[p]`` (a global phase permutation, under which
    the unbalance of a feeder does not change)."""
    return tuple(relabelling[p] for p in config)
