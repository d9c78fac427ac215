"""Records every device state and acknowledgement of a run and writes them as Parquet tables.

- ``devices.parquet``: one row per device and tick: mode, phase, injection per phase, counters and, for a PESS,
  battery and PV figures (NaN for switches).
- ``acks.parquet``: one row per acknowledgement: time, device, seq, status, reason, detail, duplicate flag.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streams import topics
from streams.bus import Bus
from streams.messages import AckStatus, DeviceAck, DeviceState, Message

log = logging.getLogger(__name__)
NAN = float("nan")
_BATTERY = ("e_kwh", "charge_kw", "discharge_kw", "pv_available_kw", "pv_used_kw")


class DeviceRecorder:
    def __init__(self, *, bus: Bus, feeder: str) -> None:
        self._states: dict[str, list[Any]] = {k: [] for k in (
            "time_utc", "device_id", "kind", "customer_id", "mode", "safe_reason", "phase", "p_a_kw", "p_b_kw",
            "p_c_kw",
            "in_transition", "operations_today", "operations_total", "rejections", "unsupplied_kwh",
            "operation_cost", *_BATTERY, "setpoint_kw", "limited_by", "energy_residual_kwh",
        )}
        self._acks: dict[str, list[Any]] = {k: [] for k in (
            "time_utc", "device_id", "seq", "status", "reason", "detail", "duplicate", "effective_utc",
        )}
        self.last_state: dict[str, DeviceState] = {}
        self.ack_counts: Counter[str] = Counter()
        self.rejected = 0
        bus.subscribe(topics.device_states(feeder), self._on_state)
        bus.subscribe(topics.device_acks(feeder), self._on_ack)

    def _on_state(self, topic: str, message: Message) -> None:
        if not isinstance(message, DeviceState):
            self.rejected += 1
            log.warning("device recorder: rejected %s on %s", type(message).__name__, topic)
            return
        self.last_state[message.device_id] = message
        s, b = self._states, message.battery
        s["time_utc"].append(message.time_utc)
        s["device_id"].append(message.device_id)
        s["kind"].append(message.kind.value)
        s["customer_id"].append(message.customer_id)
        s["mode"].append(message.mode.value)
        s["safe_reason"].append(message.safe_reason.value if message.safe_reason is not None else "")
        s["phase"].append(message.phase)
        for i, ph in enumerate("abc"):
            s[f"p_{ph}_kw"].append(message.p_kw[i])
        for name in ("in_transition", "operations_today", "operations_total", "rejections", "unsupplied_kwh",
                     "operation_cost"):
            s[name].append(getattr(message, name))
        for name in _BATTERY:
            s[name].append(getattr(b, name) if b is not None else NAN)
        s["setpoint_kw"].append(b.setpoint_kw if b is not None and b.setpoint_kw is not None else NAN)
        s["limited_by"].append(b.limited_by if b is not None else "")
        s["energy_residual_kwh"].append(b.energy_residual_kwh if b is not None else NAN)

    def _on_ack(self, topic: str, message: Message) -> None:
        if not isinstance(message, DeviceAck):
            self.rejected += 1
            log.warning("device recorder: rejected %s on %s", type(message).__name__, topic)
            return
        a = self._acks
        a["time_utc"].append(message.time_utc)
        a["device_id"].append(message.device_id)
        a["seq"].append(message.seq)
        a["status"].append(message.status.value)
        a["reason"].append(message.reason.value if message.reason is not None else None)
        a["detail"].append(message.detail)
        a["duplicate"].append(message.duplicate)
        a["effective_utc"].append(message.effective_utc)
        key = message.status.value if message.status != AckStatus.REJECTED or message.reason is None \
            else f"rejected:{message.reason.value}"
        self.ack_counts[key] += 1

    @property
    def n_states(self) -> int:
        return len(self._states["time_utc"])

    def column(self, name: str) -> np.ndarray:
        return np.asarray(self._states[name])

    def write(self, folder: Path) -> list[Path]:
        """Write ``devices.parquet`` and ``acks.parquet`` (only when the run had devices or acks)."""
        written = []
        ts = pa.timestamp("us", tz="UTC")
        for name, data, times in (("devices", self._states, ("time_utc",)),
                                  ("acks", self._acks, ("time_utc", "effective_utc"))):
            if not data["time_utc"]:
                continue
            columns = {k: pa.array(v, type=ts) if k in times else pa.array(v) for k, v in data.items()}
            path = folder / f"{name}.parquet"
            pq.write_table(pa.table(columns), path)
            written.append(path)
        return written

    def summary(self) -> dict[str, Any]:
        """Per device: final counters (and energy figures of a PESS); acks by status/reason."""
        devices: dict[str, Any] = {}
        for device_id, st in sorted(self.last_state.items()):
            entry: dict[str, Any] = {
                "kind": st.kind.value, "customer": st.customer_id, "phase": st.phase, "mode": st.mode.value,
                "operations": st.operations_total, "rejections": st.rejections,
                "unsupplied_kwh": st.unsupplied_kwh, "operation_cost": st.operation_cost,
            }
            if st.battery is not None:
                b = st.battery
                entry |= {"e_kwh": b.e_kwh, "charged_kwh": b.charged_kwh, "discharged_kwh": b.discharged_kwh,
                          "loss_kwh": b.loss_kwh, "pv_kwh": b.pv_kwh, "curtailed_kwh": b.curtailed_kwh,
                          "energy_residual_kwh": b.energy_residual_kwh}
            devices[device_id] = entry
        return {"devices": devices, "acks": dict(sorted(self.ack_counts.items()))}
