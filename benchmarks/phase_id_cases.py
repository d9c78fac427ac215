"""Realistic phase-identification cases for ``benchmarks/phase_identification.py``: feeders whose customers share
a few scaled standard profiles, as planning data built from standard load profiles do.

A case's truth is computed by the twin's power-flow engine (power-grid-model, three-phase unbalanced) over the
whole period at once, then the meters of ``twin/smart_meter.py`` report it (``phasetwin.run.meter_readings``).

- Profiles: ``n_profiles`` load shapes, each day drawn from the bundled IEEE European LV day (55 measured
  1-minute household shapes, averaged to the tick): profile k on day d is household ``perm_d[k]`` for a fresh
  random permutation per day, so each profile is a different household shape every day but every customer of
  a profile follows it exactly.
- Customers: profile ``i mod n_profiles``, scaled by an annual-energy class from {0.5, 0.75, …, 2.0} (ties
  happen, as with planning data), single-phase on a random phase.
- Feeders: the IEEE European LV feeder (55 customers, its own phases) and pandapower's Kerber Dorfnetz
  (``pandapower.networks.create_kerber_dorfnetz``: 57 loads made single-phase on random phases; lines lack
  zero-sequence data: r0/r1 = x0/x1 = 4 assumed; external grid 100 MVA).
- A move: customer ``moved`` goes to ``moved_to`` at interval ``move_at`` (its load and its meter's voltage follow).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from phasetwin.run.meter_readings import TrueReadings
from twin.network import Feeder
from twin.phase import Phase
from twin.powerflow.factory import create_powerflow
from twin.powerflow.interface import Engine

KERBER_SPEC = ";zero-sequence=r0/r1=4,x0/x1=4;ext-grid=s_sc_max_mva=100,rx_max=0.1,x0x_max=1,r0x0_max=0.1"
SCALES = np.arange(0.5, 2.01, 0.25)


@dataclass(frozen=True)
class Move:
    customer: int
    to_phase: int
    at_interval: int


@cache
def _ieee_shapes_kw(tick_s: int) -> np.ndarray:
    """[ticks per day, 55] the IEEE day's household loads averaged to ``tick_s``."""
    from twin.loaders import ieee_european_lv

    feeder = ieee_european_lv.load_feeder()
    day = ieee_european_lv.load_day(feeder)
    per = tick_s // day.step_s
    p = day.p_kw[:, :, 0]
    return p[: p.shape[0] // per * per].reshape(-1, per, p.shape[1]).mean(axis=1)


@cache
def base_feeder(name: str) -> Feeder:
    from twin.feeders import open_feeder

    if name == "ieee":
        return open_feeder("ieee-european-lv").load_feeder()
    if name == "kerber":
        import logging

        import pandapower as pp
        import pandapower.networks as pn

        logging.getLogger("twin").setLevel(logging.ERROR)
        path = Path(tempfile.mkdtemp(prefix="kerber-")) / "kerber_dorfnetz.json"
        pp.to_json(pn.create_kerber_dorfnetz(), str(path))
        return open_feeder(str(path) + KERBER_SPEC).load_feeder()
    raise ValueError(f"feeder {name!r}: expected ieee or kerber")


def case_feeder(name: str, *, seed: int) -> Feeder:
    """The feeder with every customer single-phase: the IEEE feeder keeps its phases, Kerber's draw random ones."""
    feeder = base_feeder(name)
    if name == "ieee":
        return feeder
    rng = np.random.default_rng([seed, 7])
    customers = tuple(c.model_copy(update={"phases": (Phase(int(rng.integers(3))),)}) for c in feeder.customers)
    return feeder.model_copy(update={"customers": customers})


def profile_loads_kw(n_customers: int, *, n_profiles: int, days: int, tick_s: int, seed: int) -> np.ndarray:
    """[t, customer] loads: customer i follows profile i mod n_profiles, scaled by its energy class."""
    shapes = _ieee_shapes_kw(tick_s)
    rng = np.random.default_rng([seed, 11])
    profiles = np.concatenate([shapes[:, rng.permutation(shapes.shape[1])[:n_profiles]] for _ in range(days)])
    scale = rng.choice(SCALES, size=n_customers)
    return profiles[:, np.arange(n_customers) % n_profiles] * scale[None, :]


def simulate(feeder: Feeder, load_kw: np.ndarray, *, tick_s: int, move: Move | None = None,
             start: str = "2026-01-05") -> TrueReadings:
    """The twin's power flow of ``load_kw[t, i]`` on ``feeder`` (each customer single-phase on its phase, p.f.
    0.95), as ``TrueReadings``; with ``move``, the customer's load and terminal are on ``to_phase`` from
    ``at_interval`` on (``feeder`` keeps the phase before the move)."""
    n_t, n_c = load_kw.shape
    phase = np.array([int(c.phases[0]) for c in feeder.customers])
    on_phase = np.broadcast_to(phase, (n_t, n_c)).copy()
    if move is not None:
        on_phase[move.at_interval:, move.customer] = move.to_phase
    p = np.zeros((n_t, n_c, 3))
    np.put_along_axis(p, on_phase[:, :, None], load_kw[:, :, None], axis=2)
    q = p * np.tan(np.arccos(0.95))
    flow = create_powerflow(feeder, engine=Engine.PGM, threads=1).solve(p_kw=p, q_kvar=q)
    if not flow.converged.all():
        raise RuntimeError(f"{int((~flow.converged).sum())} power-flow state(s) did not converge")
    bus = {b.id: k for k, b in enumerate(feeder.buses)}
    rows = np.array([bus[c.bus] for c in feeder.customers])
    v_v = np.full((n_t, n_c, 3), np.nan)
    v_v[:, :, 0] = np.take_along_axis(flow.v_v[:, rows, :], on_phase[:, :, None], axis=2)[:, :, 0]
    p_kw = np.full((n_t, n_c, 3), np.nan)
    p_kw[:, :, 0] = load_kw
    return TrueReadings(feeder=feeder, time_utc=pd.date_range(start, periods=n_t, freq=f"{tick_s}s", tz="UTC"),
                        tick_s=tick_s, v_v=v_v, ref_v_v=flow.v_v[:, bus[feeder.lv_bus], :],
                        ref_p_kw=flow.p_trafo_kw, p_kw=p_kw, p_step_s=tick_s)
