"""I_n (paper 004's neutral-current objective) minimised exactly by meet-in-the-middle enumeration of the schemes.

The MILP of ``decomposed.min_neutral`` proves no bound above 0: near-perfect balance is a number-partitioning
question (6^14 schemes a season), and the LP relaxation balances anything. Enumeration does prove it.

A feeder head's neutral current in scenario s is N_{s,H}(x) = Σ_{d on H} c_{s,d}(x_d) (the phase means and the
balanced DER cancel in Σ_φ e^{−j2πφ/3}), so only the *class* of a topology matters — the sets of buses its heads
carry (``head_classes``). For a season and a choice of class per scenario ("a tuple"), the season's
value max_s max_H |N_{s,H}(x)| is a maximum of K complex sums over the loads. Split the loads in two halves, list
every half's K sums (6^7 each), and join the halves on the first component (a 2-D range query: a pair can only
beat the incumbent U if |its first sum| ≤ U); every candidate pair is priced on all K components. That is the
exact minimum over the schemes for the tuple, or a proof that none is below U.

- Plan: per season, the best single class for its four scenarios (exact per class), then each scenario's topology
  the class's topology of least balanced loss.
- Bound: I_n = max over seasons, so a season's lower bound bounds the year. For a pair of the season's scenarios
  (s1, s2), every plan has a class c1 in s1 and c2 in s2, so min over (c1, c2) of the exact two-scenario minimum
  bounds the season from below. Classes whose one-scenario minimum already reaches U are skipped (they cannot
  go lower with a second scenario), and every pair is capped at U. All pairs of the season's scenarios are tried
  while the work budget lasts; the largest bound counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.spatial import cKDTree

from controllers.planning.seasonal.case import SCHEMES, SeasonalNetwork
from controllers.planning.seasonal.evaluation import ROT, SeasonalPlan, Topology, evaluate, original_plan

__all__ = ["EnumeratedNeutral", "head_classes", "loads_at", "min_neutral_enumerated", "neutral_table", "tuple_minimum"]

_M = len(SCHEMES)


@dataclass(frozen=True)
class EnumeratedNeutral:
    """The exact-by-enumeration I_n result: plan, its value, the proven bound (A) and the work done."""

    plan: SeasonalPlan
    value: float
    bound: float
    season_values: np.ndarray  # [n_seasons] the plan's I_n per season (A)
    season_bounds: np.ndarray  # [n_seasons] proven lower bounds per season (A)
    tuples_priced: int
    pairs_checked: int


def neutral_table(net: SeasonalNetwork, s: int) -> np.ndarray:
    """[D, M] complex neutral contribution (A, common frame) of load d under scheme m in scenario s."""
    out = np.zeros((len(net.loads), _M), dtype=complex)
    for d, load in enumerate(net.loads):
        c = (load.p_kw[s] - 1j * load.q_kvar[s]) / net.v_ph_kv
        for m, perm in enumerate(SCHEMES):
            share = np.zeros(3)
            share[list(perm)] = load.shares
            out[d, m] = c * complex((share * ROT).sum())
    return out


def _half_sums(comp: np.ndarray, loads: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Every scheme combination of ``loads``: [N, K] complex sums and [N, len(loads)] the schemes."""
    sums = np.zeros((1, comp.shape[2]), dtype=complex)
    for d in loads:
        sums = (sums[:, None, :] + comp[d][None, :, :]).reshape(-1, comp.shape[2])
    grids = np.indices((_M,) * len(loads)).reshape(len(loads), -1).T if loads else np.zeros((1, 0), dtype=int)
    return sums, grids


def tuple_minimum(comp: np.ndarray, cap: float, *, start: float | None = None,
                  chunk_pairs: int = 5_000_000) -> tuple[float, np.ndarray | None, int]:
    """min over schemes x of max_k |Σ_d comp[d, x_d, k]| (comp complex [D, M, K]), exactly, if below ``cap``.

    The halves are joined on at most two components (``_join_keys``; a box of half-width ``radius`` around each
    sum holds every pair whose sums there are within ``radius``). The radius grows from ``start`` (A; None: the
    cap at once) by doubling up to ``cap``: the first radius with a pair below it gives the exact minimum (a
    better pair has its joined sums within that radius too). Returns (value, schemes [D], pairs priced);
    (cap, None, n) when no combination is below ``cap``."""
    n_d = comp.shape[0]
    live = [k for k in range(comp.shape[2]) if np.abs(comp[:, :, k]).max() > 0]
    if not live:
        return 0.0, np.zeros(n_d, dtype=int), 0
    comp = comp[:, :, live]
    order = np.argsort(-np.abs(comp).max(axis=(1, 2)))
    first, second = sorted(order[0::2].tolist()), sorted(order[1::2].tolist())
    s1, g1 = _half_sums(comp, first)
    s2, g2 = _half_sums(comp, second)
    keys = _join_keys(comp)
    p1 = np.concatenate([np.c_[s1[:, k].real, s1[:, k].imag] for k in keys], axis=1)
    tree1 = cKDTree(p1, balanced_tree=False, compact_nodes=False)
    tree2 = cKDTree(np.concatenate([np.c_[-s2[:, k].real, -s2[:, k].imag] for k in keys], axis=1),
                    balanced_tree=False, compact_nodes=False)
    n_pairs = 0
    radius = cap if start is None else min(start, cap)
    while True:
        best, arg = radius, None
        # Count first when the radius is wide (memory), then join in slices of the first half.
        pieces = 1 if radius <= 0.25 else max(1, -(-int(tree1.count_neighbors(tree2, radius, p=np.inf))
                                                   // chunk_pairs))
        for rows in np.array_split(np.arange(len(p1)), pieces):
            t1 = tree1 if pieces == 1 else cKDTree(p1[rows])
            pairs = t1.sparse_distance_matrix(tree2, radius, p=np.inf, output_type="ndarray")
            n_pairs += len(pairs)
            if not len(pairs):
                continue
            i = rows[pairs["i"]]
            j = pairs["j"]
            val = np.abs(s1[i] + s2[j]).max(axis=1)
            t = int(val.argmin())
            if val[t] < best:
                best = float(val[t])
                arg = np.zeros(n_d, dtype=int)
                arg[first] = g1[i[t]]
                arg[second] = g2[j[t]]
        if arg is not None or radius >= cap:
            return (best, arg, n_pairs) if arg is not None else (cap, None, n_pairs)
        radius = min(2 * radius, cap)


def _join_keys(comp: np.ndarray) -> list[int]:
    """The (at most two) components the halves are joined on: the one with the most weight, then the one that adds
    the most weight on loads the first leaves out (a join on a component few loads reach lets too many pairs in)."""
    weight = np.abs(comp).max(axis=1)  # [D, K]
    first = int(weight.sum(axis=0).argmax())
    if comp.shape[2] == 1:
        return [first]
    gain = np.where(weight[:, [first]] > 0, 0.5 * weight, weight).sum(axis=0)
    gain[first] = -1.0
    return [first, int(gain.argmax())]


def _components(tables: list[np.ndarray], heads: list[list[list[int]]]) -> np.ndarray:
    """[D, M, K] the contributions to each (scenario, head) sum: ``heads[i]`` the load lists of scenario i's heads."""
    n_d = tables[0].shape[0]
    cols = []
    for table, sets in zip(tables, heads, strict=True):
        for loads in sets:
            mask = np.zeros(n_d)
            mask[loads] = 1.0
            cols.append(table * mask[:, None])
    return np.stack(cols, axis=2)


def loads_at(net: SeasonalNetwork, buses: frozenset[int]) -> list[int]:
    return [d for d, ld in enumerate(net.loads) if ld.bus in buses]


def head_classes(topologies: list[Topology]) -> dict[tuple[frozenset[int], ...], list[int]]:
    """The sets of buses the feeder heads carry (sorted) -> the topologies that give them."""
    out: dict[tuple[frozenset[int], ...], list[int]] = {}
    for k, t in enumerate(topologies):
        sets = sorted((frozenset(np.flatnonzero(t.below[e]).tolist()) for e in t.head_lines), key=sorted)
        out.setdefault(tuple(sets), []).append(k)
    return out


def _partitions(net: SeasonalNetwork, topologies: list[Topology]) -> list[tuple[list[list[int]], list[int]]]:
    """The distinct ways the topologies split the loads over the feeder heads: (the loads of each head that has
    any, the topologies that split them so)."""
    out: dict[frozenset[frozenset[int]], list[int]] = {}
    for sets, ks in head_classes(topologies).items():
        key = frozenset(frozenset(loads_at(net, b)) for b in sets) - {frozenset()}
        out.setdefault(key, []).extend(ks)
    return [([sorted(h) for h in sorted(key, key=sorted)], sorted(ks)) for key, ks in out.items()]


def _pair_order(tables: dict[int, np.ndarray]) -> list[tuple[int, int]]:
    """The season's scenario pairs, the least alike first (their two sums are the hardest to zero together)."""
    def alike(s1: int, s2: int) -> float:
        a, b = tables[s1].ravel(), tables[s2].ravel()
        return float(abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return sorted(combinations(sorted(tables), 2), key=lambda p: alike(*p))


def min_neutral_enumerated(net: SeasonalNetwork, topologies: list[Topology], balanced: np.ndarray, *,
                           start: SeasonalPlan | None = None, max_pairs: int = 6,
                           gap: float = 0.02) -> EnumeratedNeutral:
    """I_n minimised season by season by enumeration (module docstring): the plan (a split's topology: the one of
    least ``balanced`` loss [K, S], ``decomposed.balanced_tables``), and a bound from up to
    ``max_pairs`` scenario pairs a season (a work budget: the bound holds for any number), the seasons of highest
    I_n first, until the bound is within ``gap`` of the plan's I_n."""
    parts = _partitions(net, topologies)
    heads_of = [h for h, _ks in parts]
    base = start if start is not None else original_plan(net)
    base_obj = evaluate(net, topologies, base)
    plan_topo = base.topology.copy()
    plan_scheme = base.scheme.copy()
    season_values = np.zeros(net.n_seasons)
    season_bounds = np.zeros(net.n_seasons)
    n_tuples = n_pairs = 0
    tables_of = []
    singles = []
    # The plan: per season one split for its scenarios. The splits over fewer heads (then the more even) first,
    # so that the incumbent is small early and caps the rest; a split whose one-scenario minimum already reaches
    # the incumbent in one of the season's scenarios cannot beat it and is skipped.
    by_promise = sorted(range(len(parts)), key=lambda c: (len(heads_of[c]), -min(len(h) for h in heads_of[c])))
    for sg in range(net.n_seasons):
        scen = [int(s) for s in np.flatnonzero(net.scenario_season == sg)]
        tables = {s: neutral_table(net, s) for s in scen}
        tables_of.append(tables)
        incumbent = incumbent_0 = float(base_obj.i_n_scenario_a[scen].max())
        best_c: int | None = None
        best_x: np.ndarray | None = None
        single: dict[int, list[float]] | None = None
        for c in by_promise:
            if single is not None and max(single[s][c] for s in scen) >= incumbent:
                continue
            val, x, n = tuple_minimum(_components([tables[s] for s in scen], [heads_of[c]] * len(scen)), incumbent,
                                      start=min(incumbent, 0.01 * incumbent_0))
            n_tuples += 1
            n_pairs += n
            if x is not None:
                incumbent, best_c, best_x = val, c, x
            if single is None:  # every split's one-scenario minima, capped by the first incumbent
                single = {s: [tuple_minimum(_components([tables[s]], [h]), incumbent)[0] for h in heads_of]
                          for s in scen}
                n_tuples += len(scen) * len(heads_of)
        if best_x is not None and best_c is not None:
            plan_scheme[sg] = best_x
            ks = parts[best_c][1]
            for s in scen:
                plan_topo[s] = ks[int(np.argmin(balanced[ks, s]))]
        season_values[sg] = incumbent
        singles.append(single)
    value = float(season_values.max())
    # The bound: a split per scenario, a pair of scenarios at a time; the seasons of highest I_n first.
    for sg in np.argsort(-season_values):
        single = singles[sg]
        if season_bounds.max() >= (1 - gap) * value or single is None:
            break
        tables = tables_of[sg]
        cap = float(season_values[sg])
        bound = max(min(single[s]) for s in tables)
        for s1, s2 in _pair_order(tables)[:max_pairs]:
            pair_bound = cap
            for c1, c2 in ((a, b) for a in range(len(parts)) for b in range(len(parts))):
                if single[s1][c1] >= pair_bound or single[s2][c2] >= pair_bound:
                    continue
                val, _x, n = tuple_minimum(_components([tables[s1], tables[s2]], [heads_of[c1], heads_of[c2]]),
                                           pair_bound)
                n_tuples += 1
                n_pairs += n
                pair_bound = min(pair_bound, val)
            bound = max(bound, pair_bound)
            if bound >= (1 - gap) * cap:
                break
        season_bounds[sg] = bound
    plan = SeasonalPlan(plan_topo, plan_scheme)
    return EnumeratedNeutral(plan, evaluate(net, topologies, plan).i_n_a, float(season_bounds.max()),
                             season_values, season_bounds, n_tuples, n_pairs)
