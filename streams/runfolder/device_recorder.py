"""Records every device state and acknowledgement of a run and writes them as Parquet tables as the run goes.

- ``devices.parquet``: one row per device and tick: mode, phase, injection per phase, counters and, for a PESS,
  battery and PV figures (NaN for switches).
- ``acks.parquet``: one row per acknowledgement: time, device, seq, status, reason, detail, duplicate flag.

Rows are held until the next ``flush`` (the runner flushes with the grid recorder) and written as a part
(``streams.runfolder.parts``); ``close`` makes each table one file. A table with no row is not written.
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
from streams.runfolder.parts import PartWriter

log = logging.getLogger(__name__)
NAN = float("nan")
_BATTERY = ("e_kwh", "charge_kw", "discharge_kw", "pv_available_kw", "pv_used_kw")
_TS = pa.timestamp("us", tz="UTC")
_F = pa.float64()
STATE_SCHEMA = pa.schema([
    ("time_utc", _TS), ("device_id", pa.string()), ("kind", pa.string()), ("customer_id", pa.string()),
    ("mode", pa.string()), ("safe_reason", pa.string()), ("phase", pa.string()), ("p_a_kw", _F), ("p_b_kw", _F),
    ("p_c_kw", _F),
    ("in_transition", pa.bool_()), ("operations_today", pa.int64()), ("operations_total", pa.int64()),
    ("rejections", pa.int64()), ("unsupplied_kwh", _F), ("operation_cost", _F), *((b, _F) for b in _BATTERY),
    ("setpoint_kw", _F), ("limited_by", pa.string()), ("energy_residual_kwh", _F),
])
ACK_SCHEMA = pa.schema([
    ("time_utc", _TS), ("device_id", pa.string()), ("seq", pa.int64()), ("status", pa.string()),
    ("reason", pa.string()), ("detail", pa.string()), ("duplicate", pa.bool_()), ("effective_utc", _TS),
])
TABLES = ("devices", "acks")


class DeviceRecorder:
    """Subscribes to device states and acks; writes them under ``folder``."""

    def __init__(self, *, bus: Bus, feeder: str, folder: Path) -> None:
        self.folder = folder
        self._states: dict[str, list[Any]] = {k: [] for k in STATE_SCHEMA.names}
        self._acks: dict[str, list[Any]] = {k: [] for k in ACK_SCHEMA.names}
        self._writers = {"devices": PartWriter(folder / "devices.parquet", schema=STATE_SCHEMA),
                         "acks": PartWriter(folder / "acks.parquet", schema=ACK_SCHEMA)}
        self.n_states = 0
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
        self.n_states += 1
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

    def column(self, name: str) -> np.ndarray:
        """One column of ``devices.parquet`` (after ``close``; the rows written so far before)."""
        path = self.folder / "devices.parquet"
        if not path.exists():
            return np.asarray([])
        return pq.read_table(path, columns=[name]).column(name).to_numpy(zero_copy_only=False)

    def flush(self) -> None:
        """Write the rows held since the last flush as one part of each table."""
        for name, data in (("devices", self._states), ("acks", self._acks)):
            if not data["time_utc"]:
                continue
            writer = self._writers[name]
            writer.append(pa.Table.from_pydict(data, schema=writer.schema))
            for values in data.values():
                values.clear()

    def close(self) -> list[Path]:
        """Flush and make each table one file; returns the paths written (none for a table without rows)."""
        self.flush()
        return [p for w in self._writers.values() if (p := w.finish()) is not None]

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
