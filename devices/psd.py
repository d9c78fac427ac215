"""Phase-switching device (PSD) at a single-phase customer (Liu et al., paper 001): moves the customer's whole
load between phases A, B and C, break-before-make, 60 ms by default."""

from __future__ import annotations

from devices.limits import LeaseConfig, SwitchLimits, psd_limits
from devices.switch_device import SwitchDevice
from streams.messages import DeviceAction, DeviceKind
from twin.phase import Phase


class Psd(SwitchDevice):
    kind = DeviceKind.PSD
    actions = frozenset({DeviceAction.SET_PHASE, DeviceAction.RESET})

    def __init__(
        self, *, device_id: str, customer_id: str, phase: Phase, limits: SwitchLimits | None = None,
        lease: LeaseConfig | None = None, v_phase_v: float = 230.0,
    ) -> None:
        super().__init__(device_id=device_id, customer_id=customer_id, phase=phase, limits=limits or psd_limits(),
                         lease=lease, v_phase_v=v_phase_v)
