"""Device limits and parameters: typed configuration with documented defaults and units.

The same objects parameterise the pure device models (which enforce them) and the controllers (which plan
within them), so a plan and the device that executes it can never disagree on a limit.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

FROZEN = ConfigDict(frozen=True, extra="forbid")


class SwitchLimits(BaseModel):
    """Interlocks shared by phase-switching devices (PSD) and static transfer switches (STS)."""

    model_config = FROZEN
    operating_time_s: float = Field(
        default=0.060, ge=0, le=600,
        description="break-before-make time during which the load is unsupplied (PSD 60 ms, STS 20 ms)",
    )
    min_dwell_s: float = Field(default=900.0, ge=0, description="minimum time between two switch operations")
    max_operations_per_day: int = Field(default=12, ge=0, description="operations allowed per UTC calendar day")
    rating_a: float = Field(
        default=80.0, gt=0, description="current rating; a switch of a load drawing more is refused (STS eq. 7)"
    )
    cost_per_operation: float = Field(
        default=0.0, ge=0, description="cost δ of one switch operation, currency units (STS paper eq. 2)"
    )


def psd_limits(**overrides: float) -> SwitchLimits:
    """PSD defaults: 60 ms operating time, 15 min dwell, 12 operations a day, 80 A rating."""
    return SwitchLimits.model_validate({"operating_time_s": 0.060, **overrides})


def sts_limits(**overrides: float) -> SwitchLimits:
    """STS defaults: 20 ms transfer, 15 min dwell, 12 operations a day, I_STS^max 63 A, δ_STS 0.5 per operation."""
    return SwitchLimits.model_validate(
        {"operating_time_s": 0.020, "rating_a": 63.0, "cost_per_operation": 0.5, **overrides}
    )


class PessParams(BaseModel):
    """A PV + battery system behind one hybrid inverter (STS paper eqs. 23–36), load-positive sign convention.

    The battery exchanges ``charge_kw``/``discharge_kw`` on the AC side; its stored energy follows eq. 34,
    E_t = E_{t−1} + (η_c·P_c − P_d/η_d)·Δt. The inverter's AC output P_pv,used + P_d − P_c is limited to
    ``inverter_kva`` (unity power factor).
    """

    model_config = FROZEN
    pv_kwp: float = Field(default=5.0, ge=0, description="PV peak power, kW")
    energy_kwh: float = Field(default=10.0, gt=0, description="usable battery capacity E_bat^max, kWh")
    e_min_kwh: float = Field(default=1.0, ge=0, description="lowest allowed stored energy E_bat^min, kWh")
    e_initial_kwh: float = Field(default=5.0, ge=0, description="stored energy at the start of the run E_bat^0, kWh")
    charge_max_kw: float = Field(default=5.0, gt=0, description="W_bat,c^max, kW (AC side)")
    discharge_max_kw: float = Field(default=5.0, gt=0, description="W_bat,d^max, kW (AC side)")
    eta_charge: float = Field(default=0.95, gt=0, le=1, description="charging efficiency ω_bat,c")
    eta_discharge: float = Field(default=0.95, gt=0, le=1, description="discharging efficiency ω_bat,d")
    inverter_kva: float = Field(default=6.0, gt=0, description="inverter apparent-power limit, kVA")
    end_of_day_target: bool = Field(
        default=True, description="E_bat at each UTC midnight returns to E_bat^0 (eq. 36); the device enforces it"
    )
    throughput_cost_per_kwh: float = Field(default=0.02, ge=0, description="battery wear cost per kWh through it")
    curtailment_cost_per_kwh: float = Field(default=0.10, ge=0, description="cost of curtailed PV energy")

    @model_validator(mode="after")
    def _energy_bounds(self) -> Self:
        if not self.e_min_kwh <= self.e_initial_kwh <= self.energy_kwh:
            raise ValueError(
                f"e_initial_kwh {self.e_initial_kwh} must lie within [e_min_kwh {self.e_min_kwh}, "
                f"energy_kwh {self.energy_kwh}]"
            )
        return self


class LeaseConfig(BaseModel):
    """Watchdog: a device that hears no valid command or controller heartbeat for ``lease_s`` goes safe."""

    model_config = FROZEN
    lease_s: float = Field(default=1800.0, gt=0, description="default: 2 control periods of 15 min")
