"""Static transfer switch (STS) carrying a single-phase load between phases (Zhang et al., paper 003,
eqs. 20–22): a 20 ms transfer by default, refused above its current rating I_STS^max (eq. 7), each operation
costing δ_STS (eq. 2). An STS in front of a single-phase PESS is part of the PESS model (``devices/pess.py``)."""

from __future__ import annotations

from devices.limits import LeaseConfig, SwitchLimits, sts_limits
from devices.switch_device import SwitchDevice
from streams.messages import DeviceAction, DeviceKind
from twin.phase import Phase


class Sts(SwitchDevice):
    kind = DeviceKind.STS
    actions = frozenset({DeviceAction.TRANSFER, DeviceAction.RESET})

    def __init__(
        self, *, device_id: str, customer_id: str, phase: Phase, limits: SwitchLimits | None = None,
        lease: LeaseConfig | None = None, v_phase_v: float = 230.0,
    ) -> None:
        super().__init__(device_id=device_id, customer_id=customer_id, phase=phase, limits=limits or sts_limits(),
                         lease=lease, v_phase_v=v_phase_v)
