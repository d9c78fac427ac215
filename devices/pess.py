"""PV + battery system (PESS) behind one hybrid inverter (Zhang et al., paper 003, eqs. 23–36).

Each tick the battery power b (AC side, + discharge, − charge; charging and discharging exclusive, eq. 35)
is the commanded setpoint — or, in self-consumption (no setpoint, or the lease ran out), whatever brings the
host customer's grid exchange to zero — cut in this order by:
1. the charge/discharge power limits;
2. the energy bounds e_min..energy_kwh (eq. 36), through E_t = E_{t−1} + (η_c·P_c − P_d/η_d)·Δt (eq. 34);
3. the end-of-day target (eq. 36, E at UTC midnight = E_0): E must stay within what full-power charging or
   discharging can still bring back to E_0 by midnight, so the target is met exactly at midnight;
4. the inverter: |P_pv,used + b| ≤ inverter_kva. A commanded setpoint is kept and PV curtailed; in
   self-consumption the battery takes the surplus first.
PV used = available · (1 − ξ) with the commanded curtailment rate ξ (eq. 33). The injection goes on all three
phases equally (three-phase PESS) or on one phase (eqs. 25–29), switchable through an STS when it has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from devices.commands import Outcome
from devices.device import BatteryTick, Device, TickReport, to_s
from devices.limits import LeaseConfig, PessParams, SwitchLimits
from devices.switch_mechanism import DAY_S, SwitchCore, utc_day
from streams.messages import AckStatus, DeviceAction, DeviceCommand, DeviceKind, RejectReason
from twin.phase import Phase

TOL = 1e-9


@dataclass
class EnergyLedger:
    """Cumulative energies; ``residual_kwh`` closes the battery balance and is 0 up to rounding."""

    e0_kwh: float
    charged_kwh: float = 0.0
    discharged_kwh: float = 0.0
    loss_kwh: float = 0.0
    pv_kwh: float = 0.0
    curtailed_kwh: float = 0.0
    target_misses: int = 0
    """Midnights at which the stored energy was not back at E_0 (only when a limit made it impossible)."""

    def residual_kwh(self, e_kwh: float) -> float:
        return (e_kwh - self.e0_kwh) - (self.charged_kwh - self.discharged_kwh - self.loss_kwh)


class Pess(Device):
    kind = DeviceKind.PESS
    actions = frozenset({DeviceAction.SET_BATTERY, DeviceAction.RESET})

    def __init__(
        self, *, device_id: str, customer_id: str, params: PessParams, phases: tuple[Phase, ...],
        switch: SwitchLimits | None = None, lease: LeaseConfig | None = None, v_phase_v: float = 230.0,
    ) -> None:
        super().__init__(device_id=device_id, customer_id=customer_id, lease=lease, v_phase_v=v_phase_v)
        if len(phases) not in (1, 3) or len(set(phases)) != len(phases):
            raise ValueError(f"PESS {device_id!r}: phases {phases} must be one phase or all three")
        if switch is not None and len(phases) != 1:
            raise ValueError(f"PESS {device_id!r}: only a single-phase PESS can sit behind an STS")
        self.params = params
        self.phases = phases
        self.switch = SwitchCore(limits=switch, phase=phases[0]) if switch is not None else None
        self.e_kwh = params.e_initial_kwh
        self.setpoint_kw: float | None = None
        self.curtailment = 0.0
        self.ledger = EnergyLedger(e0_kwh=params.e_initial_kwh)
        self.ac_kw = 0.0
        self._locked = False
        self._lock_reason = ""

    # --- commands -------------------------------------------------------------------------------------------
    def decide(self, command: DeviceCommand, t_s: float, now_utc: datetime) -> Outcome:
        p = self.params
        if self._locked:
            return Outcome.rejected(command.seq, RejectReason.LOCKOUT, f"locked out ({self._lock_reason}); send reset")
        b = command.battery_kw
        if b is not None and not -p.charge_max_kw - TOL <= b <= p.discharge_max_kw + TOL:
            return Outcome.rejected(
                command.seq, RejectReason.RATING,
                f"battery_kw {b} outside [-{p.charge_max_kw}, {p.discharge_max_kw}] kW (− charge, + discharge)",
            )
        if command.phase is not None and Phase[command.phase] != self.phase:
            target = Phase[command.phase]
            if self.switch is None:
                return Outcome.rejected(
                    command.seq, RejectReason.INTERLOCK,
                    f"PESS on phase(s) {''.join(ph.name for ph in self.phases)} has no transfer switch",
                )
            refusal = self.switch.refusal(target, t_s=t_s, i_a=abs(self.ac_kw) * 1e3 / self.v_phase_v)
            if refusal is not None:
                return Outcome.rejected(command.seq, refusal.reason, refusal.detail)
            self.switch.operate(target, t_s=t_s)
            self._pending.append((command.seq, self.switch.transition_end_s))
        if b is not None:
            self.setpoint_kw = b
        if command.curtailment is not None:
            self.curtailment = command.curtailment
        if self._pending and self._pending[-1][0] == command.seq:
            return Outcome(seq=command.seq, status=AckStatus.ACCEPTED,
                           detail=f"transferring to phase {self.phase.name}")
        return Outcome(seq=command.seq, status=AckStatus.APPLIED, effective_utc=now_utc,
                       detail=f"setpoint {self.setpoint_kw} kW, curtailment {self.curtailment:.2f}")

    @property
    def phase(self) -> Phase:
        return self.switch.phase if self.switch is not None else self.phases[0]

    # --- one tick -------------------------------------------------------------------------------------------
    def step(self, start_utc: datetime, tick_s: float, *, pv_available_kw: float = 0.0) -> TickReport:
        if pv_available_kw < 0:
            raise ValueError(f"PESS {self.device_id!r}: pv_available_kw {pv_available_kw} must be >= 0")
        start_s = to_s(start_utc)
        end_s = start_s + tick_s
        self.now_s = max(self.now_s, start_s)
        safe = self.lease.expired(start_s)
        if safe:
            self.setpoint_kw, self.curtailment = None, 0.0
        battery = self._dispatch(start_s, tick_s, pv_available_kw)
        self.ac_kw = battery.pv_used_kw + battery.discharge_kw - battery.charge_kw
        self._check_midnight(end_s)
        applied: list[Outcome] = []
        phase: Phase | None = self.phase
        if self.switch is not None:
            sw = self.switch
            lost_s = sw.unsupplied_s(start_s, end_s)
            # while the transfer switch is open the inverter cannot export or import: count what it would have
            sw.unsupplied_kwh += abs(self.ac_kw) * lost_s / 3600.0
            phase = sw.supplied_phase(start_s, end_s)
            applied = self._finish_operations(sw.phase, start_utc, end_s)
        p_kw = [0.0, 0.0, 0.0]
        if phase is not None:
            for ph in (self.phases if len(self.phases) == 3 else (phase,)):
                p_kw[ph] = -self.ac_kw / len(self.phases)
        return TickReport(phase=phase, p_kw=(p_kw[0], p_kw[1], p_kw[2]),
                          in_transition=self.switch is not None and self.switch.in_transition(start_s),
                          applied=applied, battery=battery)

    def _dispatch(self, start_s: float, tick_s: float, pv_kw: float) -> BatteryTick:
        p, e = self.params, self.e_kwh
        dt_h = tick_s / 3600.0
        pv_used = pv_kw * (1.0 - self.curtailment)
        if self._locked:
            wanted = 0.0
        elif self.setpoint_kw is not None:
            wanted = self.setpoint_kw
        else:
            wanted = self.load_kw - pv_used
        b, pv_used, limits = battery_dispatch_kw(p, e_kwh=e, start_s=start_s, tick_s=tick_s, wanted_kw=wanted,
                                                 pv_used_kw=pv_used, self_consumption=self.setpoint_kw is None)
        charge, discharge = (-b, 0.0) if b < 0 else (0.0, b)
        self.e_kwh = energy_after_kwh(p, e, b, tick_s)
        led = self.ledger
        led.charged_kwh += charge * dt_h
        led.discharged_kwh += discharge * dt_h
        led.loss_kwh += (charge * (1.0 - p.eta_charge) + discharge * (1.0 / p.eta_discharge - 1.0)) * dt_h
        led.pv_kwh += pv_kw * dt_h
        led.curtailed_kwh += (pv_kw - pv_used) * dt_h
        return BatteryTick(e_kwh=self.e_kwh, charge_kw=charge, discharge_kw=discharge, pv_available_kw=pv_kw,
                           pv_used_kw=pv_used, setpoint_kw=self.setpoint_kw, limited_by=",".join(limits))

    def _check_midnight(self, end_s: float) -> None:
        at_midnight = self.params.end_of_day_target and end_s % DAY_S == 0
        if at_midnight and abs(self.e_kwh - self.params.e_initial_kwh) > 1e-6:
            self.ledger.target_misses += 1

    # --- faults ---------------------------------------------------------------------------------------------
    def trip(self, reason: str) -> None:
        """A fault: the battery idles (PV still flows) and commands are refused until reset."""
        self._locked, self._lock_reason = True, reason

    def reset(self) -> None:
        self._locked, self._lock_reason = False, ""
        self.setpoint_kw = None

    @property
    def locked_out(self) -> bool:
        return self._locked


def energy_after_kwh(params: PessParams, e_kwh: float, battery_kw: float, tick_s: float) -> float:
    """Stored energy after a tick at ``battery_kw`` (+ discharge, − charge), through the efficiencies."""
    charge_kw, discharge_kw = max(0.0, -battery_kw), max(0.0, battery_kw)
    dt_h = tick_s / 3600.0
    return e_kwh + (params.eta_charge * charge_kw - discharge_kw / params.eta_discharge) * dt_h


def _power_for(params: PessParams, e_kwh: float, e_next_kwh: float, dt_h: float) -> float:
    """Battery power (+ discharge) that brings the stored energy from ``e_kwh`` to ``e_next_kwh`` in one tick."""
    delta = e_kwh - e_next_kwh
    return delta * params.eta_discharge / dt_h if delta >= 0 else delta / (params.eta_charge * dt_h)


def battery_dispatch_kw(
    params: PessParams, *, e_kwh: float, start_s: float, tick_s: float, wanted_kw: float, pv_used_kw: float,
    self_consumption: bool,
) -> tuple[float, float, list[str]]:
    """What a PESS does over one tick (module docstring, steps 1–4) when it wants battery power ``wanted_kw``
    (+ discharge) with ``pv_used_kw`` of PV after curtailment and ``e_kwh`` stored at ``start_s``: the battery
    power it gives, the PV it uses, and what cut the setpoint. ``self_consumption``: no commanded setpoint (the
    battery takes a PV surplus rather than curtail it). The device's own rule, and what a controller must expect
    of a setpoint it sends (e.g. the end-of-day target overriding it before midnight)."""
    p, dt_h, pv_used = params, tick_s / 3600.0, pv_used_kw
    limits: list[str] = []
    e_full, e_empty = _power_for(p, e_kwh, p.energy_kwh, dt_h), _power_for(p, e_kwh, p.e_min_kwh, dt_h)
    lo, hi = max(-p.charge_max_kw, e_full), min(p.discharge_max_kw, e_empty)
    w_lo, w_hi = lo, hi
    if p.end_of_day_target:
        tau_h = max(0.0, (utc_day(start_s) + 1) * DAY_S - (start_s + tick_s)) / 3600.0
        e_hi = p.e_initial_kwh + p.discharge_max_kw / p.eta_discharge * tau_h
        e_lo = p.e_initial_kwh - p.charge_max_kw * p.eta_charge * tau_h
        # clamped into [lo, hi]: when rounding makes the target a hair out of reach, go full power towards it
        w_lo = min(max(lo, _power_for(p, e_kwh, e_hi, dt_h)), hi)
        w_hi = max(min(hi, _power_for(p, e_kwh, e_lo, dt_h)), lo)
    b = min(max(wanted_kw, w_lo), w_hi)
    if b != wanted_kw:
        if (b == w_lo and w_lo > lo) or (b == w_hi and w_hi < hi):
            limits.append("day-end")
        else:
            limits.append("soc" if b in (e_full, e_empty) else "power")
    lo, hi = w_lo, w_hi
    if pv_used + b > p.inverter_kva:
        if self_consumption:  # self-consumption stores the surplus rather than curtail it
            b = max(p.inverter_kva - pv_used, lo)
        if pv_used + b > p.inverter_kva:  # a commanded setpoint is kept and PV curtailed instead
            pv_used = max(0.0, p.inverter_kva - b)
            b = min(b, p.inverter_kva - pv_used)
        limits.append("inverter")
    elif pv_used + b < -p.inverter_kva:
        b = min(-p.inverter_kva - pv_used, hi)
        limits.append("inverter")
    return b, pv_used, limits
