"""I_n (paper 004's neutral-current objective) minimised exactly by meet-in-the-middle enumeration of the schemes.

The MILP of ``decomposed.min_neutral`` proves no bound above 0: near-perfect balance is a number-partitioning
question (6^14 schemes a season), and the LP relaxation balances anything. Enumeration does prove it.

A feeder head's neutral current in scenario s is N_{s,H}(x) = Σ_{d on H} c_{s,d}(x_d) (the phase means and the
balanced DER cancel in Σ_φ e^{−j2πφ/3}), so only how a topology splits the loads over the heads matters (a
"split", ``_partitions``). A season's I_n for schemes x is V(x) = max_s min_c max_{H∈c} |N_{s,H}(x)|: each
scenario takes the split that suits it (its topology is free), the schemes are shared.

``season_minimum`` finds min_x V(x) exactly. Every x with V(x) ≤ r has, in one chosen scenario s0, a split c with
max_H |N_{s0,H}(x)| ≤ r. Those schemes are listed split by split by meet-in-the-middle: the loads in two halves,
every half's head sums (6^7 each), the halves joined in a box of half-width r on at most two heads (a k-d tree
range query; a pair outside the box has a head sum above r), the pairs priced exactly. Their union, priced on
every scenario of the season, holds every scheme of V ≤ r: its least V is the season's exact minimum if it is
≤ r; if not, no scheme reaches r, and r is a proven lower bound. The radius grows until one or the other
settles the season; I_n is the year's worst season, so the seasons' minima give the year's exact minimum.

I_n alone leaves the other seasons (and the worst one's topologies) free; ``min_neutral_enumerated`` breaks the
ties by losses: every season takes, among its schemes of season value at most the year's I_n, the one whose
least-loss topologies (among the splits at most that value) lose least.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from controllers.planning.seasonal.case import SCHEMES, SeasonalNetwork
from controllers.planning.seasonal.evaluation import (
    ROT,
    SeasonalPlan,
    Topology,
    bus_currents,
    evaluate,
    original_plan,
)

__all__ = ["EnumeratedNeutral", "SeasonMinimum", "head_classes", "loads_at", "min_neutral_enumerated",
           "neutral_table", "season_minimum"]

_M = len(SCHEMES)


@dataclass(frozen=True)
class EnumeratedNeutral:
    """The exact-by-enumeration I_n result: plan, its value, the proven bound (A) and the work done."""

    plan: SeasonalPlan
    value: float
    bound: float
    season_values: np.ndarray  # [n_seasons] the plan's I_n per season (A)
    season_bounds: np.ndarray  # [n_seasons] proven lower bounds per season (A)
    schemes_priced: int
    rounds: int


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


@dataclass(frozen=True)
class SeasonMinimum:
    """A season's I_n minimum over the schemes with a split chosen per scenario (``season_minimum``)."""

    value: float  # the exact minimum (A) when ``scheme`` is set; else a proven lower bound: no scheme is below it
    scheme: np.ndarray | None  # [D] the minimiser
    splits: np.ndarray | None  # [n_scenarios] the split each scenario takes at the minimiser
    schemes_priced: int  # schemes whose season value was computed (the work done)
    rounds: int


def _codes(grid: np.ndarray, loads: list[int]) -> np.ndarray:
    """[N] int64 code Σ_d x_d·6^d of a half's scheme combinations (``grid`` [N, len(loads)])."""
    weights = np.array([_M ** d for d in loads], dtype=np.int64)
    return grid.astype(np.int64) @ weights


def _decode(codes: np.ndarray, n_d: int) -> np.ndarray:
    return (codes[:, None] // (_M ** np.arange(n_d, dtype=np.int64))[None, :]) % _M


def _below(table: np.ndarray, heads: list[list[int]], radius: float) -> np.ndarray:
    """Codes of every scheme x with max_H |Σ_{d∈H} table[d, x_d]| ≤ radius (a superset is fine: callers price
    them), by meet-in-the-middle: the halves joined in a box of half-width ``radius`` on at most two heads."""
    comp = _components([table], [heads])
    live = [k for k in range(comp.shape[2]) if np.abs(comp[:, :, k]).max() > 0]
    n_d = comp.shape[0]
    if not live:
        return np.arange(_M ** n_d, dtype=np.int64)
    comp = comp[:, :, live]
    order = np.argsort(-np.abs(comp).max(axis=(1, 2)))
    first, second = sorted(order[0::2].tolist()), sorted(order[1::2].tolist())
    s1, g1 = _half_sums(comp, first)
    s2, g2 = _half_sums(comp, second)
    keys = _join_keys(comp)
    tree1 = cKDTree(np.concatenate([np.c_[s1[:, k].real, s1[:, k].imag] for k in keys], axis=1))
    tree2 = cKDTree(np.concatenate([np.c_[-s2[:, k].real, -s2[:, k].imag] for k in keys], axis=1))
    pairs = tree1.sparse_distance_matrix(tree2, radius, p=np.inf, output_type="ndarray")
    i, j = pairs["i"], pairs["j"]
    keep = np.abs(s1[i] + s2[j]).max(axis=1) <= radius
    return _codes(g1, first)[i[keep]] + _codes(g2, second)[j[keep]]


def _season_values(tables: list[np.ndarray], splits: list[list[list[int]]], codes: np.ndarray,
                   chunk: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """[N] the season value max_i min_c max_{H∈c} |N_{i,H}(x)| of each scheme code and [N, n_i] the split taken."""
    n_d = tables[0].shape[0]
    heads = [h for split in splits for h in split]
    owner = np.repeat(np.arange(len(splits)), [len(split) for split in splits])
    mask = np.zeros((n_d, len(heads)))
    for col, h in enumerate(heads):
        mask[h, col] = 1.0
    values = np.zeros(len(codes))
    chosen = np.zeros((len(codes), len(tables)), dtype=int)
    for lo in range(0, len(codes), chunk):
        x = _decode(codes[lo:lo + chunk], n_d)
        worst = np.zeros(len(x))
        for i, table in enumerate(tables):
            sums = np.abs(table[np.arange(n_d)[None, :], x] @ mask)  # [n, heads]
            per_split = np.stack([sums[:, owner == c].max(axis=1) for c in range(len(splits))], axis=1)
            c = per_split.argmin(axis=1)
            chosen[lo:lo + chunk, i] = c
            worst = np.maximum(worst, per_split[np.arange(len(x)), c])
        values[lo:lo + chunk] = worst
    return values, chosen


def _listed(tables: list[np.ndarray], splits: list[list[list[int]]], radius: float) -> np.ndarray:
    """Sorted codes of every scheme whose season value may be ≤ ``radius`` (a superset): the schemes at most
    ``radius`` under some split in the scenario of widest spread (the fewest schemes near balance)."""
    i0 = int(np.argmax([float((np.abs(t) ** 2).max(axis=1).sum()) for t in tables]))
    return np.unique(np.concatenate([_below(tables[i0], split, radius) for split in splits]))


def _least_loss(net: SeasonalNetwork, topologies: list[Topology], parts: list[tuple[list[list[int]], list[int]]],
                scen: list[int], cap: float, max_candidates: int) -> tuple[np.ndarray, list[int]] | None:
    """Among the season's schemes of season value ≤ ``cap`` (at most ``max_candidates``, the lowest), the one
    of least hour-weighted losses, each scenario taking the least-loss topology among the splits at most ``cap``
    there: (schemes [D], topology per scenario); None if there is none."""
    tables = [neutral_table(net, s) for s in scen]
    splits = [h for h, _ks in parts]
    codes = _listed(tables, splits, cap)
    values, _ = _season_values(tables, splits, codes)
    keep = np.flatnonzero(values <= cap)
    if not len(keep):
        return None
    codes = codes[keep[np.argsort(values[keep], kind="stable")][:max_candidates]]
    n_d = len(net.loads)
    below = np.array([t.below for t in topologies], dtype=float)  # [K, E, n]
    r = net.z_ohm.real
    best: tuple[float, np.ndarray, list[int]] | None = None
    for x in _decode(codes, n_d):
        total = 0.0
        topo = []
        for s, table in zip(scen, tables, strict=True):
            allowed = sorted({k for c, (heads, ks) in enumerate(parts)
                              if max(abs(complex(table[h, x[h]].sum())) for h in heads) <= cap for k in ks})
            i_line = below[allowed] @ bus_currents(net, s, x)  # [k, E, 3]
            loss = (r[None, :, None] * np.abs(i_line) ** 2).sum(axis=(1, 2))
            k = int(loss.argmin())
            topo.append(allowed[k])
            total += float(net.hours[s] * loss[k])
        if best is None or total < best[0]:
            best = (total, x, topo)
    assert best is not None
    return best[1], best[2]


def season_minimum(tables: list[np.ndarray], splits: list[list[list[int]]], cap: float, *, start: float,
                   growth: float = 1.5, max_schemes: int = 40_000_000) -> SeasonMinimum:
    """min over schemes x of max_i min_c max_{H∈splits[c]} |Σ_{d∈H} tables[i][d, x_d]|: the season's I_n when
    each scenario i may take any split c of the loads over the heads (``tables[i]``: ``neutral_table``).

    Every scheme below a radius r has, in one scenario i0, some split below r, so the union over the splits of
    i0's schemes below r (``_below``) holds it: pricing that set on every scenario gives the exact minimum if it
    is below r, and otherwise proves none is. The radius grows from ``start`` by ``growth`` (or to just above the
    least value the set held) up to ``cap``. i0 is the scenario with the widest spread (the fewest schemes near
    balance). ``max_schemes`` (a work budget) stops the growth: the last radius searched is then the bound.
    """
    if all(not np.any(t) for t in tables):  # no load unbalanced in any scenario: every scheme is at 0
        return SeasonMinimum(0.0, np.zeros(tables[0].shape[0], dtype=int), np.zeros(len(tables), dtype=int), 0, 0)
    radius = min(start, cap)
    bound = 0.0
    priced = rounds = 0
    while True:
        rounds += 1
        codes = _listed(tables, splits, radius)
        priced += len(codes)
        if len(codes):
            values, chosen = _season_values(tables, splits, codes)
            best = int(values.argmin())
            if values[best] <= radius:
                return SeasonMinimum(float(values[best]), _decode(codes[best:best + 1], tables[0].shape[0])[0],
                                     chosen[best], priced, rounds)
            least = float(values[best])
        else:
            least = math.inf
        bound = radius
        if radius >= cap or priced >= max_schemes:
            return SeasonMinimum(bound, None, None, priced, rounds)
        radius = min(growth * radius, math.nextafter(least, math.inf), cap)


def min_neutral_enumerated(net: SeasonalNetwork, topologies: list[Topology], balanced: np.ndarray, *,
                           start: SeasonalPlan | None = None, max_schemes: int = 40_000_000,
                           first_radius: float = 0.002, tie_break: bool = True,
                           tie_candidates: int = 2000) -> EnumeratedNeutral:
    """I_n minimised season by season, exactly (``season_minimum``; module docstring). The plan: the minimiser's
    schemes and, per scenario, the topology of least ``balanced`` loss [K, S] (``decomposed.balanced_tables``)
    among those of the split it takes. A season whose minimum is not below the start plan's keeps the start plan's
    part. ``first_radius`` (share of the start plan's season value) sets where the first season's radius starts
    (the next start at the season before's minimum, the seasons being alike); ``max_schemes``
    (a work budget per season) where it stops, the bound then the last radius searched. ``tie_break``: then
    every season takes, among its schemes whose season value is at most the year's I_n (the lowest
    ``tie_candidates`` of them), the one and the topologies of least losses — the year's I_n unchanged."""
    parts = _partitions(net, topologies)
    heads_of = [h for h, _ks in parts]
    base = start if start is not None else original_plan(net)
    base_obj = evaluate(net, topologies, base)
    plan_topo = base.topology.copy()
    plan_scheme = base.scheme.copy()
    season_values = np.zeros(net.n_seasons)
    season_bounds = np.zeros(net.n_seasons)
    priced = rounds = exact = 0
    last: float | None = None  # the previous season's minimum: where the next season's radius starts
    for sg in range(net.n_seasons):
        scen = [int(s) for s in np.flatnonzero(net.scenario_season == sg)]
        cap = float(base_obj.i_n_scenario_a[scen].max())
        found = season_minimum([neutral_table(net, s) for s in scen], heads_of, cap,
                               start=first_radius * cap if last is None else last, max_schemes=max_schemes)
        last = found.value if found.scheme is not None else None
        exact += found.scheme is not None
        priced += found.schemes_priced
        rounds += found.rounds
        season_bounds[sg] = found.value
        season_values[sg] = cap
        if found.scheme is not None and found.splits is not None and found.value < cap:
            plan_scheme[sg] = found.scheme
            for s, c in zip(scen, found.splits, strict=True):
                ks = parts[int(c)][1]
                plan_topo[s] = ks[int(np.argmin(balanced[ks, s]))]
            season_values[sg] = found.value
    # Ties: I_n is the worst season's, so every season may take, among its schemes and splits at most that, the
    # ones of least losses (I_n alone leaves them free; the worst season keeps its minimisers).
    worst = float(season_values.max()) * (1 + 1e-9)
    # (Only when every season's minimum is exact: the listing is then at a radius where it was already done.)
    for sg in range(net.n_seasons if tie_break and exact == net.n_seasons else 0):
        scen = [int(s) for s in np.flatnonzero(net.scenario_season == sg)]
        least = _least_loss(net, topologies, parts, scen, worst, max_candidates=tie_candidates)
        if least is not None:
            plan_scheme[sg] = least[0]
            plan_topo[scen] = least[1]
    plan = SeasonalPlan(plan_topo, plan_scheme)
    return EnumeratedNeutral(plan, evaluate(net, topologies, plan).i_n_a, float(season_bounds.max()),
                             season_values, season_bounds, priced, rounds)
