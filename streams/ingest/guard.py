"""The ingest guard: every meter reading is checked once, before any role (grid, devices, controller, recorders)
sees it; a bad one is quarantined to ``.../deadletter`` and replaced by the meter's last good value.

Checks, in this order, each with its reason code (``DeadLetterReason``):
- ``id_mismatch``: the payload's feeder or meter id is not its topic's, or the feeder has no such meter;
- ``future``: the reading's tick or time is more than ``skew_ticks`` ticks ahead of the receiver's clock (the
  tick the twin is in, never the sender's timestamp);
- ``non_finite``: a value is NaN or infinite (JSON ``NaN``, ``Infinity``, ``"NaN"``, ``1e309`` all decode so);
- ``implausible``: outside the customer's envelope — another number of terminals than the customer has, power
  on a terminal it does not have, or an apparent power above the terminal limit;
- ``clock_offset``: the reading's time is not its tick's, or lies a whole number of hours (≥ 1) behind the
  receiver's tick (a sender's clock off by a DST or time-zone shift);
- plausibility per customer (``Plausibility``, given or learned from the run's own data by ``learn``):
  ``above_contract`` (|P| on a terminal above its contracted power), ``export_without_pv`` (export at a customer
  whose data never exported), ``unit_scale`` (about ×1000 or ÷1000 the meter's last good value: W as kW, kW as
  MW), ``step_change`` (a jump from the last good value larger than the customer's data ever made).
A quarantined reading goes to the dead letters with its original payload (as received, when the bus keeps it),
the reason code, the detail and the receive time, and is counted per reason. In its place the roles get the
meter's last good value (zero before the first, as the grid assumes for a missing reading) marked
``estimated``, for the same tick — except a ``future`` reading, whose tick is not believed: it is dropped and the
grid counts the meter missing (it then holds the last value too); so is a bad reading for another tick than
the current one. A real reading that arrives after an estimate replaces it (the grid role keeps the estimate
only until then).

The guard wraps the handlers of the meter topics (``GuardedBus``); one message reaches several handlers, so the
verdict is computed once per message object and reused.
"""

from __future__ import annotations

import json
import logging
import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from streams import topics
from streams.bus import Bus, BusWrapper, Handler
from streams.messages import DeadLetter, DeadLetterReason, Message, MeterFrame, MeterReading
from streams.phases import phase_max
from streams.ticks import TickAxis

log = logging.getLogger(__name__)
PAYLOAD_CHARS = 1000


@dataclass(frozen=True)
class MeterEnvelope:
    """What one meter may report: its number of terminals and the apparent power one terminal can carry."""

    n_terminals: int
    s_max_kva: float


@dataclass(frozen=True)
class Plausibility:
    """What one customer's readings may do, per terminal: |P| up to ``p_max_kw``, export down to
    ``-export_max_kw`` (0 without PV), a change between two readings up to ``step_max_kw``."""

    p_max_kw: float
    export_max_kw: float
    step_max_kw: float


LEARN_MARGIN = 1.5
LEARN_ALLOWANCE_KW = 2.0
"""A learned limit is the data's extreme × ``LEARN_MARGIN`` + ``LEARN_ALLOWANCE_KW``."""
EXPORT_NOISE_KW = 0.05
"""Export a customer without PV may show (metering noise)."""
UNIT_RATIO = (300.0, 3000.0)
"""A reading this many times its meter's last good value (or that fraction of it) is a unit error."""
UNIT_MIN_KW = 0.01
"""... when the last good value is at least this large (near zero, ratios mean nothing)."""


def learn_plausibility(p_kw: np.ndarray) -> list[Plausibility]:
    """Per-customer limits from a run's own data ``p_kw`` [ticks, customers, 3] (NaN ignored)."""
    with np.errstate(invalid="ignore"):
        p = np.nan_to_num(np.asarray(p_kw, dtype=float))
        peak = np.abs(p).max(axis=(0, 2)) if len(p) else np.zeros(p.shape[1])
        export = np.maximum(0.0, -p.min(axis=(0, 2))) if len(p) else np.zeros(p.shape[1])
        step = np.abs(np.diff(p, axis=0)).max(axis=(0, 2)) if len(p) > 1 else np.zeros(p.shape[1])
    return [Plausibility(p_max_kw=LEARN_MARGIN * pk + LEARN_ALLOWANCE_KW,
                         export_max_kw=LEARN_MARGIN * ex + LEARN_ALLOWANCE_KW if ex > EXPORT_NOISE_KW
                         else EXPORT_NOISE_KW,
                         step_max_kw=LEARN_MARGIN * st + LEARN_ALLOWANCE_KW)
            for pk, ex, st in zip(peak, export, step, strict=True)]


@dataclass
class IngestCounters:
    checked: int = 0
    """Meter readings checked (a frame row counts as one)."""
    quarantined: Counter[DeadLetterReason] = field(default_factory=Counter)
    estimated: int = 0
    """Meter readings replaced by the meter's last good value."""

    def by_reason(self) -> dict[str, int]:
        return {reason.value: self.quarantined[reason] for reason in sorted(self.quarantined)}


def _wall_utc() -> datetime:
    return datetime.now(UTC)


class TopicGuard(ABC):
    """What the guards share: the tick they check against, the topics they guard, and one verdict per message
    object (a message delivered to several handlers is checked and counted once)."""

    _patterns: tuple[str, ...] = ()
    _tick: int = 0
    _seen: Message | None = None
    _passed: Message | None = None

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        self._tick = tick

    def guards(self, pattern: str) -> bool:
        return pattern in self._patterns

    def wrap(self, handler: Handler) -> Handler:
        def guarded(topic: str, message: Message) -> None:
            passed = self.admit(topic, message)
            if passed is not None:
                handler(topic, passed)

        return guarded

    def admit(self, topic: str, message: Message) -> Message | None:
        """What the roles get for ``message`` (None: nothing), computed once per message object."""
        if message is not self._seen:
            self._seen, self._passed = message, self._verdict(topic, message)
        return self._passed

    @abstractmethod
    def _verdict(self, topic: str, message: Message) -> Message | None:
        """The message the roles get (possibly repaired), or None when it is quarantined."""


class IngestGuard(TopicGuard):
    """Checks meter readings against the feeder's envelopes and the receiver's clock. A tick stage: run it first
    in every tick, so that it knows the tick the twin is in."""

    def __init__(
        self, *, bus: Bus, feeder: str, envelopes: Mapping[str, MeterEnvelope], start_utc: datetime, tick_s: int,
        skew_ticks: int, raw_payload: Callable[[], bytes | None] = lambda: None,
        wall_utc: Callable[[], datetime] = _wall_utc,
    ) -> None:
        self._bus, self._feeder = bus, feeder
        self._ids = tuple(envelopes)
        self._index = {m: i for i, m in enumerate(self._ids)}
        self._n_terminals = np.array([e.n_terminals for e in envelopes.values()], dtype=int)
        self._s_max = np.array([e.s_max_kva for e in envelopes.values()], dtype=float)
        self._unused = np.arange(3)[None, :] >= self._n_terminals[:, None]
        self._last_p = np.zeros((len(self._ids), 3))
        self._last_q = np.zeros((len(self._ids), 3))
        self._has_last = np.zeros(len(self._ids), dtype=bool)
        n = len(self._ids)
        self._p_max = np.full(n, np.inf)
        self._export_max = np.full(n, np.inf)
        self._step_max = np.full(n, np.inf)
        self._plausibility_known = False
        self._axis, self._skew_ticks = TickAxis(start_utc=start_utc, tick_s=tick_s), skew_ticks
        self._raw_payload, self._wall_utc = raw_payload, wall_utc
        self._tick = 0
        self._deadletter_topic = topics.deadletter(feeder)
        self._patterns = (topics.meters(feeder), topics.meter_frame(feeder))
        self._seen: Message | None = None
        self._passed: Message | None = None
        self.counters = IngestCounters()

    def learn(self, limits: Mapping[str, Plausibility]) -> None:
        """Per-customer plausibility limits (given, or ``learn_plausibility`` of the run's data)."""
        self._plausibility_known = True
        for meter_id, lim in limits.items():
            i = self._index[meter_id]
            self._p_max[i], self._export_max[i], self._step_max[i] = lim.p_max_kw, lim.export_max_kw, lim.step_max_kw

    # --- the clock -----------------------------------------------------------------------------------------
    # --- the bus -------------------------------------------------------------------------------------------
    def _verdict(self, topic: str, message: Message) -> Message | None:
        """What the roles get for ``message``: itself, a copy with estimates in place of quarantined rows, or None."""
        if isinstance(message, MeterFrame):
            passed: Message | None = self._frame(topic, message)
        elif isinstance(message, MeterReading):
            passed = self._reading(topic, message)
        else:
            passed = message  # another type on a meter topic: the roles count it as rejected
        return passed

    # --- checks --------------------------------------------------------------------------------------------
    def _future(self, tick: int, time_utc: datetime) -> str:
        latest_tick = self._tick + self._skew_ticks
        latest_utc = self._axis.time_of(latest_tick)
        if tick > latest_tick or time_utc > latest_utc:
            return (f"tick {tick} ({time_utc.isoformat()}) is more than {self._skew_ticks} tick(s) ahead of the "
                    f"receiver's tick {self._tick}")
        return ""

    def _reading(self, topic: str, message: MeterReading) -> MeterReading | None:
        self.counters.checked += 1
        topic_meter = topic.rsplit("/", 1)[-1]
        i = self._index.get(topic_meter)
        if message.feeder != self._feeder or message.meter_id != topic_meter or i is None:
            detail = (f"reading of meter {message.meter_id!r} (feeder {message.feeder!r}) on the topic of meter "
                      f"{topic_meter!r}" + ("" if i is not None else f"; feeder {self._feeder!r} has no such meter"))
            return self._quarantine(topic, message, DeadLetterReason.ID_MISMATCH, detail, row=i, tick=message.tick)
        future = self._future(message.tick, message.time_utc)
        if future:
            return self._quarantine(topic, message, DeadLetterReason.FUTURE, future, row=None, tick=message.tick)
        offset = self._clock_offset(message.tick, message.time_utc)
        if offset:
            return self._quarantine(topic, message, DeadLetterReason.CLOCK_OFFSET, f"meter {topic_meter}: {offset}",
                                    row=None, tick=message.tick)
        boolean = booleans_as_numbers(self._raw_payload(), ("p_kw", "q_kvar"))
        if boolean:
            return self._quarantine(topic, message, DeadLetterReason.INVALID, f"meter {topic_meter}: {boolean}",
                                    row=i, tick=message.tick)
        values = (*message.p_kw, *message.q_kvar)
        if not all(math.isfinite(v) for v in values):
            return self._quarantine(topic, message, DeadLetterReason.NON_FINITE,
                                    f"meter {topic_meter}: p_kw {list(message.p_kw)}, q_kvar {list(message.q_kvar)}",
                                    row=i, tick=message.tick)
        n = int(self._n_terminals[i])
        if len(message.p_kw) != n or len(message.q_kvar) != n:
            return self._quarantine(topic, message, DeadLetterReason.IMPLAUSIBLE,
                                    f"meter {topic_meter}: {len(message.p_kw)} active and {len(message.q_kvar)} "
                                    f"reactive value(s); the customer has {n} terminal(s)", row=i, tick=message.tick)
        s_max = float(self._s_max[i])
        worst = max(math.hypot(p, q) for p, q in zip(message.p_kw, message.q_kvar, strict=True))
        if worst > s_max:
            return self._quarantine(topic, message, DeadLetterReason.IMPLAUSIBLE,
                                    f"meter {topic_meter}: {worst:.6g} kVA on a terminal; the envelope is "
                                    f"{s_max:g} kVA", row=i, tick=message.tick)
        p_row = np.zeros(3)
        p_row[:n] = message.p_kw
        found = self._implausible_rows(np.array([i]), p_row[None, :])[0] if self._plausibility_known else None
        if found is not None:
            return self._quarantine(topic, message, found[0], f"meter {topic_meter}: {found[1]}", row=i,
                                    tick=message.tick)
        self._last_p[i, :n] = message.p_kw
        self._last_q[i, :n] = message.q_kvar
        self._has_last[i] = True
        return message

    def _clock_offset(self, tick: int, time_utc: datetime) -> str:
        """Why a reading's time cannot be believed ("" when it can)."""
        expected = self._axis.time_of(tick)
        if time_utc != expected:
            return (f"time {time_utc.isoformat()} is not the time of its tick {tick} ({expected.isoformat()}): "
                    f"off by {(time_utc - expected).total_seconds():g} s")
        behind_s = (self._axis.time_of(self._tick) - time_utc).total_seconds()
        if behind_s >= 3600 and behind_s % 3600 == 0:
            return (f"tick {tick} ({time_utc.isoformat()}) is exactly {behind_s / 3600:g} h behind the receiver's "
                    f"tick {self._tick}: a clock off by whole hours (DST, time zone)")
        return ""

    def _implausible_rows(self, rows: np.ndarray, p: np.ndarray, *, last: np.ndarray | None = None,
                          has_last: np.ndarray | None = None) -> list[tuple[DeadLetterReason, str] | None]:
        """The plausibility verdict of each row of ``p`` [k, 3] (finite, inside the envelope) of meters ``rows``,
        against their last good values (given, or the guard's)."""
        last = self._last_p[rows] if last is None else last
        has_last = self._has_last[rows] if has_last is None else has_last
        p_max, export_max, step_max = self._p_max[rows], self._export_max[rows], self._step_max[rows]
        size = phase_max(np.abs(p))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(p) / np.abs(last)
        lo, hi = UNIT_RATIO
        big_last = has_last[:, None] & (np.abs(last) >= UNIT_MIN_KW)
        contract = size > p_max
        beyond_steps = phase_max(np.abs(p - last)) > step_max
        # ×1000 only where it also breaks the contract (a legit kettle on an idle house is a big ratio too);
        # ÷1000 only from a large last value (a kilowatt-sized load does not drop to watts by a thousandth) and by a
        # step larger than any in the meter's data (a drop its own data show is no unit error)
        unit = (big_last & ((((ratio >= lo) & (ratio <= hi)) & contract[:, None])
                            | ((ratio >= 1 / hi) & (ratio <= 1 / lo) & (np.abs(last) >= 5000 * UNIT_MIN_KW)
                               & beyond_steps[:, None]))
                ).any(axis=1)
        export = phase_max(-p) > export_max
        step = has_last & beyond_steps
        out: list[tuple[DeadLetterReason, str] | None] = [None] * len(rows)
        for k in np.flatnonzero(unit | export | contract | step).tolist():  # the words only where a verdict is due
            if unit[k]:
                out[k] = (DeadLetterReason.UNIT_SCALE, f"p_kw {p[k].tolist()} is about 1,000 times (or a "
                          f"thousandth of) its last good value {last[k].tolist()}: a unit error")
            elif export[k]:
                out[k] = (DeadLetterReason.EXPORT_WITHOUT_PV, f"export {(-p[k]).max():.6g} kW; this customer "
                          f"exports at most {export_max[k]:.6g} kW (no PV)")
            elif contract[k]:
                out[k] = (DeadLetterReason.ABOVE_CONTRACT, f"|p_kw| {size[k]:.6g} kW on a terminal; this "
                          f"customer's limit is {p_max[k]:.6g} kW")
            else:
                out[k] = (DeadLetterReason.STEP_CHANGE, f"a step of {np.abs(p[k] - last[k]).max():.6g} kW from "
                          f"its last good value {last[k].tolist()}; its data step at most {step_max[k]:.6g} kW")
        return out

    def admit_block(self, *, first_tick: int, p_kw: np.ndarray, q_kvar: np.ndarray) -> bool:
        """Whether the frames of ticks ``first_tick ..`` (``p_kw``/``q_kvar`` [k, meters, 3], every meter in
        envelope order, from the twin's own replay) pass every check as k frames one by one would: finite, no
        power on missing terminals, inside the envelope and plausible against the previous tick's values. When
        they do, the guard counts and remembers them as if it had checked them one by one and True is returned;
        otherwise nothing changes (the caller sends them frame by frame, and the frame path says what failed)."""
        k, n = p_kw.shape[0], len(self._ids)
        if k == 0 or p_kw.shape[1] != n:
            return False
        finite = np.isfinite(p_kw).all() and np.isfinite(q_kvar).all()
        if not finite or ((p_kw != 0) | (q_kvar != 0))[:, self._unused].any():
            return False
        if (np.hypot(p_kw, q_kvar) > self._s_max[None, :, None]).any():
            return False
        if self._plausibility_known:
            rows = np.tile(np.arange(n), k)
            last = np.concatenate([self._last_p[None], p_kw[:-1]]).reshape(k * n, 3)
            has_last = np.concatenate([self._has_last[None], np.ones((k - 1, n), dtype=bool)]).reshape(-1)
            if any(v is not None for v in self._implausible_rows(rows, p_kw.reshape(k * n, 3), last=last,
                                                                  has_last=has_last)):
                return False
        self.counters.checked += k * n
        self._last_p[:] = p_kw[-1]
        self._last_q[:] = q_kvar[-1]
        self._has_last[:] = True
        self._tick = first_tick + k - 1
        return True

    def _frame(self, topic: str, message: MeterFrame) -> MeterFrame | None:
        n_rows = len(message.meter_ids)
        self.counters.checked += n_rows
        if message.feeder != self._feeder:
            detail = f"frame of feeder {message.feeder!r} on the topic of feeder {self._feeder!r}"
            self._dead_letter(topic, message, DeadLetterReason.ID_MISMATCH, detail, rows=n_rows)
            return None
        future = self._future(message.tick, message.time_utc)
        if future:
            self._dead_letter(topic, message, DeadLetterReason.FUTURE, future, rows=n_rows)
            return None
        offset = self._clock_offset(message.tick, message.time_utc)
        if offset:
            self._dead_letter(topic, message, DeadLetterReason.CLOCK_OFFSET, offset, rows=n_rows)
            return None
        p, q = message.p_kw, message.q_kvar
        rows = (np.arange(n_rows) if message.meter_ids == self._ids
                else np.array([self._index.get(m, -1) for m in message.meter_ids], dtype=int))
        known = rows >= 0
        finite = np.isfinite(p).all(axis=1) & np.isfinite(q).all(axis=1)
        r = np.where(known, rows, 0)
        with np.errstate(invalid="ignore"):
            s_kva = np.hypot(np.where(np.isfinite(p), p, 0.0), np.where(np.isfinite(q), q, 0.0))
        off_terminal = ((p != 0) | (q != 0)) & self._unused[r]
        too_big = (s_kva > self._s_max[r][:, None]).any(axis=1)
        bad = ~known | ~finite | off_terminal.any(axis=1) | too_big
        plausible: dict[int, tuple[DeadLetterReason, str]] = {}
        if self._plausibility_known:
            ok = np.flatnonzero(~bad)
            verdicts = self._implausible_rows(rows[ok], p[ok]) if ok.size else []
            plausible = {int(row): v for row, v in zip(ok.tolist(), verdicts, strict=True) if v is not None}
            bad[np.array(list(plausible), dtype=int)] = True
        if not bad.any():
            self._last_p[rows] = p
            self._last_q[rows] = q
            self._has_last[rows] = True
            return message
        good = ~bad
        self._last_p[rows[good]] = p[good]
        self._last_q[rows[good]] = q[good]
        self._has_last[rows[good]] = True
        out_p, out_q = p.copy(), q.copy()
        estimated = []
        for row in np.flatnonzero(bad):
            meter_id = message.meter_ids[row]
            if not known[row]:
                reason, detail = DeadLetterReason.ID_MISMATCH, f"feeder {self._feeder!r} has no meter {meter_id!r}"
            elif not finite[row]:
                reason, detail = DeadLetterReason.NON_FINITE, (f"meter {meter_id}: p_kw {p[row].tolist()}, "
                                                               f"q_kvar {q[row].tolist()}")
            elif int(row) in plausible:
                reason, detail = plausible[int(row)][0], f"meter {meter_id}: {plausible[int(row)][1]}"
            elif off_terminal[row].any():
                reason, detail = DeadLetterReason.IMPLAUSIBLE, (f"meter {meter_id}: power on terminal(s) it does not "
                                                                f"have ({int(self._n_terminals[rows[row]])} terminals)")
            else:
                reason, detail = DeadLetterReason.IMPLAUSIBLE, (f"meter {meter_id}: {s_kva[row].max():.6g} kVA on a "
                                                                f"terminal; the envelope is "
                                                                f"{self._s_max[rows[row]]:g} kVA")
            self._dead_letter(topic, message, reason, detail)
            if known[row]:
                out_p[row], out_q[row] = self._last_p[rows[row]], self._last_q[rows[row]]
                estimated.append(meter_id)
                self.counters.estimated += 1
            else:
                out_p[row], out_q[row] = 0.0, 0.0  # the roles ignore an unknown meter's row; keep it finite
        return MeterFrame.trusted(feeder=message.feeder, tick=message.tick, time_utc=message.time_utc,
                                  meter_ids=message.meter_ids, p_kw=out_p, q_kvar=out_q,
                                  estimated=(*message.estimated, *estimated))

    # --- quarantine ----------------------------------------------------------------------------------------
    def _quarantine(self, topic: str, message: MeterReading, reason: DeadLetterReason, detail: str, *,
                    row: int | None, tick: int) -> MeterReading | None:
        self._dead_letter(topic, message, reason, detail)
        if row is None or reason is DeadLetterReason.FUTURE or tick != self._tick:
            return None
        n = int(self._n_terminals[row])
        self.counters.estimated += 1
        return MeterReading.trusted(
            feeder=self._feeder, tick=tick, time_utc=self._axis.time_of(tick),
            meter_id=self._ids[row], p_kw=tuple(self._last_p[row, :n].tolist()),
            q_kvar=tuple(self._last_q[row, :n].tolist()), estimated=True)

    def _dead_letter(self, topic: str, message: Message, reason: DeadLetterReason, detail: str, *,
                     rows: int = 1) -> None:
        """One dead letter; ``rows`` readings counted (a whole frame refused for its feeder or time)."""
        self.counters.quarantined[reason] += rows
        log.info("ingest: quarantined a reading on %s: %s (%s)", topic, reason.value, detail)
        raw = self._raw_payload()
        text = raw.decode(errors="replace") if raw is not None else _as_json(message)
        self._bus.publish(self._deadletter_topic, DeadLetter(
            topic=topic, reason=reason, detail=detail[:PAYLOAD_CHARS], payload=text[:PAYLOAD_CHARS],
            received_utc=self._wall_utc()))


def booleans_as_numbers(raw: bytes | None, fields: tuple[str, ...]) -> str:
    """Which of ``fields`` of the JSON payload ``raw`` hold ``true``/``false`` where numbers belong (pydantic reads
    ``true`` as 1.0); "" when none (or no bytes: in process)."""
    if raw is None or (b"true" not in raw and b"false" not in raw):
        return ""
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    bad = [f"{name} {body[name]!r}" for name in fields if isinstance(body, dict) and isinstance(body.get(name), list)
           and any(isinstance(v, bool) for v in body[name])]
    return ("a boolean where a number belongs: " + ", ".join(bad)) if bad else ""


def _as_json(message: Message) -> str:
    """An in-process message as JSON, NaN and infinities spelt as JavaScript does (pydantic would write null)."""
    return json.dumps(message.model_dump(mode="python"), default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class Guard(Protocol):
    def guards(self, pattern: str) -> bool: ...

    def wrap(self, handler: Handler) -> Handler: ...


class GuardedBus(BusWrapper):
    """A bus whose guarded-topic subscribers receive only what the guard admits (meter readings for the
    ``IngestGuard``, device messages for the ``DeviceGuard``); everything else is the inner bus."""

    def __init__(self, inner: Bus, guard: Guard) -> None:
        super().__init__(inner)
        self.guard = guard

    def publish(self, topic: str, message: Message) -> None:
        self.inner.publish(topic, message)

    def subscribe(self, pattern: str, handler: Handler) -> None:
        self.inner.subscribe(pattern, self.guard.wrap(handler) if self.guard.guards(pattern) else handler)

