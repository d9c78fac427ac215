"""Phase-switching device (PSD) at a single-phase customer (Liu et al., paper 001): moves the customer's whole
load between phases A, B and C, break-before-make, 60 ms by default."""

from __future__ import annotations

from devices.limits import psd_limits
from devices.switch_device import SwitchDevice
from streams.messages import DeviceAction, DeviceKind


class Psd(SwitchDevice):
    kind = DeviceKind.PSD
    actions = frozenset({DeviceAction.SET_PHASE, DeviceAction.RESET})
    default_limits = psd_limits()
