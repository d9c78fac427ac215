"""The time-series schema every recorder writes to InfluxDB (live or ``phasetwin export``), in one place.

Every point carries the tags ``run`` (run id), ``scenario`` and ``feeder``; its timestamp is the simulation time
of the tick (aware UTC, second precision), so a replayed historical day lands on its real dates. A point's key
is measurement + tags + timestamp: writing the same run again overwrites, never duplicates. The Grafana
dashboard in ``docker/`` may only query measurements and fields listed here (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["float", "int", "bool", "string"]
COMMON_TAGS = ("run", "scenario", "feeder")


@dataclass(frozen=True)
class Measurement:
    name: str
    tags: tuple[str, ...]
    """Tags beyond ``COMMON_TAGS``."""
    fields: dict[str, FieldType]
    description: str


MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("bus_voltage", ("bus", "phase"), {"vm_pu": "float", "va_deg": "float"},
                "voltage per bus and phase (A, B, C): magnitude in p.u. of the phase-to-neutral nominal, angle"),
    Measurement("line_current", ("line", "phase"), {"i_ka": "float"},
                "current per line and conductor (A, B, C, N) at the from end, kA"),
    Measurement("transformer", ("phase",), {"p_kw": "float", "q_kvar": "float"},
                "power the transformer delivers into the LV bus per phase"),
    Measurement("phase_load", ("lv_feeder", "phase"), {"p_kw": "float"},
                "aggregate customer load per LV feeder and phase (re-phasing paper eq. 8)"),
    Measurement("unbalance", ("lv_feeder",), {"p_unb_kw": "float"},
                "P_unb summand of re-phasing paper eq. 7 per LV feeder"),
    Measurement("voltage_band", ("phase",), {"vm_min_pu": "float", "vm_max_pu": "float"},
                "lowest and highest |V| per phase over the LV buses"),
    Measurement("loading", ("phase",), {"trafo_pct": "float", "line_max_pct": "float", "line_max_id": "string"},
                "loading per phase, % of rating: transformer (|S| over a third of its kVA) and the most loaded line "
                "(|I| over its ampacity) with its id; as the run folder's loading.parquet"),
    Measurement("network", (), {"p_unb_kw": "float", "loss_kw": "float", "vuf_max_pct": "float",
                                "i_n_max_a": "float", "kappa_trafo": "float"},
                "feeder-wide figures of a tick: total P_unb, losses, worst VUF, worst neutral current, transformer κ"),
    Measurement("device", ("device", "kind"), {
        "phase": "string", "phase_index": "int", "mode": "string", "in_transition": "bool", "p_kw": "float",
        "operations_today": "int", "operations_total": "int", "commands_executed": "int", "rejections": "int",
        "unsupplied_kwh": "float", "e_kwh": "float", "charge_kw": "float", "discharge_kw": "float",
        "pv_available_kw": "float", "pv_used_kw": "float", "curtailed_kwh": "float",
    }, "device state per tick; phase_index 0/1/2 = A/B/C, -1 unsupplied; battery fields only for PESS"),
    Measurement("controller", ("controller", "strategy"), {
        "objective": "float", "solve_s": "float", "status": "string", "fallbacks": "int", "switches": "int",
        "p_unb_kwh": "float", "predicted_vm_min_pu": "float", "predicted_vm_max_pu": "float",
        "violations": "int", "repaired": "bool",
    }, "one point per control period, at the time the plan was made"),
    Measurement("ltupf", ("controller",), {
        "predicted_vm_min_pu": "float", "actual_vm_min_pu": "float", "error_vm_min_pu": "float",
        "predicted_vm_max_pu": "float", "actual_vm_max_pu": "float", "error_vm_max_pu": "float",
    }, "LTUPF prediction of a plan's first step against the power flow over that step, at the step start"),
    Measurement("audit", ("device", "entry"), {
        "origin": "string", "key_id": "string", "seq": "int", "action": "string", "outcome": "string",
        "reason": "string", "detail": "string", "topic": "string", "issued_utc": "string", "received_utc": "string",
        "decided_utc": "string",
    }, "one point per command a device decided on (the run folder's audit.jsonl), at the decision's time"),
    Measurement("twin", (), {
        "tick": "int", "lateness_s": "float", "overruns": "int", "max_lateness_s": "float",
        "powerflow_failures": "int", "readings_missing": "int", "readings_rejected": "int", "deadletters": "int",
        "points_written": "int", "points_spooled": "int", "points_dropped": "int",
    }, "health of the run per tick (from the twin's status)"),
)

BY_NAME: dict[str, Measurement] = {m.name: m for m in MEASUREMENTS}
