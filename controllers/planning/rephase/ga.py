"""A genetic-algorithm baseline configured like the authors' public code (``Code/Utils/GA.py``, pygad).

What is kept from it: one gene per customer (its configuration, always a feasible one), the initial plan as
individual 0 and random feasible individuals for the rest, steady-state selection of the best 40 % as parents
(at least 4), single-point crossover, the best max(4, 10 %) kept unchanged (elitism), and the authors'
``on_generation`` mutation: every gene of every non-elite individual is redrawn with probability 0.1 after a
generation that improved the best fitness, and with a rate drawn uniformly in [0.05, 0.85] otherwise. The
fitness is the paper's objective (eq. 6a) over every step, summed over the feeders; 30 individuals and 50
generations by default (the brief's configuration; the snapshot of the code has 50 and 60).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from controllers.planning.rephase.problem import RephaseProblem

__all__ = ["GaOutcome", "GaSettings", "genetic_baseline"]


class GaSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    population: int = Field(default=30, ge=4)
    generations: int = Field(default=50, ge=1)
    mutation_rate: float = Field(default=0.1, ge=0, le=1)
    seed: int = 14


@dataclass(frozen=True)
class GaOutcome:
    choices: list[np.ndarray]
    objective: float
    evaluations: int
    best_per_generation: tuple[float, ...]


def genetic_baseline(problem: RephaseProblem, settings: GaSettings | None = None) -> GaOutcome:
    """Run the GA on the whole network; returns the best plan it evaluated."""
    settings = settings or GaSettings()
    rng = np.random.default_rng(settings.seed)
    sizes = np.array([len(o) for fp in problem.feeders for o in fp.options])
    bounds = np.cumsum([0] + [fp.n_customers for fp in problem.feeders])
    n_parents = max(4, int(settings.population * 0.4))
    n_elite = max(4, int(settings.population * 0.1))
    cache: dict[bytes, float] = {}

    def fitness(genes: np.ndarray) -> float:
        key = genes.tobytes()
        if key not in cache:
            cache[key] = sum(fp.objective(genes[bounds[i]:bounds[i + 1]]) for i, fp in enumerate(problem.feeders))
        return cache[key]

    def random_genes(shape: tuple[int, ...]) -> np.ndarray:
        return np.asarray((rng.random(shape) * sizes).astype(np.int64))

    population = random_genes((settings.population, sizes.size))
    population[0] = np.concatenate([fp.initial for fp in problem.feeders])
    best_value, best = np.inf, population[0].copy()
    history = []
    rate = settings.mutation_rate
    for _ in range(settings.generations):
        values = np.array([fitness(g) for g in population])
        order = np.argsort(values, kind="stable")
        population, values = population[order], values[order]
        improved = values[0] < best_value - 1e-12
        if improved:
            best_value, best = float(values[0]), population[0].copy()
        history.append(best_value)
        rate = settings.mutation_rate if improved else float(rng.random() * 0.8 + 0.05)
        parents = population[:n_parents]
        children = np.empty((settings.population - n_elite, sizes.size), dtype=np.int64)
        for k in range(children.shape[0]):
            a, b = parents[k % n_parents], parents[(k + 1) % n_parents]
            cut = int(rng.integers(1, sizes.size))
            children[k] = np.concatenate([a[:cut], b[cut:]])
        redraw = rng.random(children.shape) < rate
        children[redraw] = random_genes(children.shape)[redraw]
        population = np.concatenate([population[:n_elite], children])
    values = np.array([fitness(g) for g in population])
    if values.min() < best_value:
        best_value, best = float(values.min()), population[int(np.argmin(values))].copy()
    choices = [best[bounds[i]:bounds[i + 1]].copy() for i in range(len(problem.feeders))]
    return GaOutcome(choices, best_value, len(cache), tuple(history))
