"""Paper 001's Case II on the Liège data: a doubled-load moment whose power flow diverges, two PSD customers, the
repair with the fewest switches, checked against pandapower and against every PSD position."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from support.liege_data import LIEGE_FOLDER, needs_liege

from controllers.ltupf import OperatingLimits, build_network_model, ntupf_check
from phasetwin.plan.case_two import paper_case_two
from twin.loaders import liege
from twin.phase import Phase
from twin.phasing import PhaseMap
from twin.powerflow import Engine, create_powerflow

DAY_START = 9_984  # day 105, which holds moment 10 046 of the year scan


@needs_liege
def test_liege_case_two_diverges_and_one_psd_switch_makes_it_converge() -> None:
    """On a day of the year's divergent doubled moments: the case diverges with power-grid-model and pandapower
    alike; the repair moves the fewest PSDs of all 9 positions that converge, and pandapower converges there
    too."""
    feeder = liege.load_feeder(LIEGE_FOLDER)
    year = liege.load_year(feeder, LIEGE_FOLDER)
    day = year.between(year.time_utc[DAY_START], year.time_utc[DAY_START + 96])
    case = paper_case_two(feeder, day)
    assert case.n_divergent >= 1 and not case.initial.converged
    assert case.psd_ids == ("116", "126") and case.repair_check.converged
    mapping = PhaseMap.initial(feeder.customers)
    ids = [c.id for c in feeder.customers]
    psd = [ids.index(c) for c in case.psd_ids]
    step = int(np.flatnonzero(day.time_utc == day.time_utc[0] + pd.Timedelta(minutes=15) * (case.moment))[0])
    data = day.select(ids)
    scale = np.where(np.array([[p == case.phase for p in conn] + [False] * (3 - len(conn))
                               for conn in mapping.connections]), 2.0, 1.0)
    p, q = data.p_kw[step] * scale, data.q_kvar[step] * scale
    pandapower, net, limits = create_powerflow(feeder, engine=Engine.PANDAPOWER), build_network_model(feeder), \
        OperatingLimits()
    assert not ntupf_check(pandapower, net, p_kw=mapping.to_phases(p), q_kvar=mapping.to_phases(q),
                           limits=limits).converged
    moved = {}
    for combo in itertools.product(tuple(Phase), repeat=2):
        trial = mapping
        for i, ph in zip(psd, combo, strict=True):
            trial = trial.with_connection(i, (ph,))
        pgm = create_powerflow(feeder, engine=Engine.PGM)
        if ntupf_check(pgm, net, p_kw=trial.to_phases(p), q_kvar=trial.to_phases(q), limits=limits).converged:
            moved[combo] = sum(trial.connections[i] != mapping.connections[i] for i in psd)
    assert len(moved) == case.converging_positions
    assert case.fewest_switches == min(moved.values()) >= 1
    repaired = mapping
    for text in case.repair:
        cid, change = text.split(": ")
        repaired = repaired.with_connection(ids.index(cid), (Phase[change.split(" → ")[1]],))
    assert ntupf_check(pandapower, net, p_kw=repaired.to_phases(p), q_kvar=repaired.to_phases(q),
                       limits=limits).converged
