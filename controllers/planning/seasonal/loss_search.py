"""E_loss's plan by deterministic local search over a season's phase schemes, every scenario at its best topology.

A season's loss is f(x) = Σ_s h_s·min_k L_s(k, x) over its scenarios s and every radial topology k (``evaluate``'s
surrogate). From a start, the best of all single moves (one load to another scheme) and, when none improves, of all
pair moves (two loads at once) is taken until neither improves or ``max_moves`` are spent: a work budget, so the
plan depends on the data only, never on the machine's speed or load. Moves are priced incrementally:
L_s(k, x') = L_s(k, x) + Σ_e r_e·Σ_φ(2·Re(Ī_keφ·δ_φ) + |δ_φ|²) over the lines e above the moved load's bus.
"""

from __future__ import annotations

import numpy as np

from controllers.planning.seasonal.case import SCHEMES, SeasonalNetwork
from controllers.planning.seasonal.evaluation import Topology, load_phase_shares

__all__ = ["search_season"]


def _contributions(net: SeasonalNetwork, scenarios: list[int]) -> np.ndarray:
    """[S_g, D, M, 3] complex current (A) load d draws on each phase under scheme m, per scenario."""
    out = np.zeros((len(scenarios), len(net.loads), len(SCHEMES), 3), dtype=complex)
    for i, s in enumerate(scenarios):
        for d, load in enumerate(net.loads):
            c = (load.p_kw[s] - 1j * load.q_kvar[s]) / net.v_ph_kv
            for m in range(len(SCHEMES)):
                out[i, d, m] = c * load_phase_shares(load.shares, m)
    return out


def search_season(net: SeasonalNetwork, topologies: list[Topology], scenarios: list[int], start: np.ndarray, *,
                  max_moves: int = 200) -> tuple[np.ndarray, dict[int, int], float]:
    """The season's schemes [D] found from ``start``, each scenario's topology of least loss, and the season's
    loss Σ_s h_s·L_s (kWh)."""
    below = np.array([t.below for t in topologies], dtype=float)  # [K, E, n]
    r = net.z_ohm.real
    h = net.hours[scenarios]
    buses = np.array([ld.bus for ld in net.loads])
    contrib = _contributions(net, scenarios)  # [S, D, M, 3]
    sgen = np.array([net.sgen_kw[s] / 3.0 / net.v_ph_kv for s in scenarios])  # [S, n]
    a_ked = r[None, :, None] * below[:, :, buses]  # [K, E, D]
    a_kd = a_ked.sum(axis=1)  # [K, D]
    pair_kdd = np.einsum("ked,kef->kdf", a_ked, below[:, :, buses])  # [K, D, D] Σ_e r_e on both loads' paths
    n_d, n_m = len(net.loads), len(SCHEMES)
    same = np.eye(n_d, dtype=bool)[:, None, :, None] | np.zeros((n_d, n_m, n_d, n_m), dtype=bool)
    x = np.asarray(start, dtype=int).copy()
    idx = np.arange(n_d)
    at_bus = (np.arange(net.n_bus)[:, None] == buses[None, :]).astype(float)  # [n, D]

    def state(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        j = np.einsum("nd,sdp->snp", at_bus, contrib[:, idx, x]) - sgen[:, :, None]  # [S, n, 3]
        i_line = np.einsum("ken,snp->skep", below, j)  # [S, K, E, 3]
        loss = (r[None, None, :, None] * np.abs(i_line) ** 2).sum(axis=(2, 3)) / 1000.0  # [S, K]
        return i_line, loss

    def season_value(loss: np.ndarray) -> np.ndarray:
        return np.tensordot(h, loss.min(axis=1), axes=1)

    i_line, loss = state(x)
    value = float(season_value(loss))
    for _ in range(max_moves):
        delta = contrib - contrib[:, idx, x][:, :, None, :]  # [S, D, M, 3]
        g = np.einsum("ked,skep->skdp", a_ked, i_line.conj())  # [S, K, D, 3]
        single = (2.0 * np.einsum("skdp,sdmp->skdm", g, delta).real
                  + a_kd[None, :, :, None] * (np.abs(delta) ** 2).sum(axis=3)[:, None]) / 1000.0  # [S, K, D, M]
        trial = loss[:, :, None, None] + single
        one = np.tensordot(h, trial.min(axis=1), axes=1)  # [D, M]
        d, m = np.unravel_index(int(one.argmin()), one.shape)
        if one[d, m] < value * (1 - 1e-12):
            x[d] = m
        else:
            cross = 2.0 * np.einsum("kdf,sdmp,sfnp->skdmfn", pair_kdd, delta.conj(), delta).real / 1000.0
            both = single[:, :, :, :, None, None] + single[:, :, None, None, :, :] + cross
            two = np.tensordot(h, (loss[:, :, None, None, None, None] + both).min(axis=1), axes=1)
            two[same] = np.inf
            d1, m1, d2, m2 = np.unravel_index(int(two.argmin()), two.shape)
            if not two[d1, m1, d2, m2] < value * (1 - 1e-12):
                break
            x[d1], x[d2] = m1, m2
        i_line, loss = state(x)
        value = float(season_value(loss))
    topo = {s: int(loss[i].argmin()) for i, s in enumerate(scenarios)}
    return x, topo, value
