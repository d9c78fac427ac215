"""The bus over a real MQTT broker (paho-mqtt 2, MQTT 5): the same interface as ``LocalBus``.

Every role of the twin publishes to the broker and receives what the broker delivers; nothing takes a short
cut in process. Delivery is made deterministic by a barrier: the network thread (``streams.mqtt.loop``, paho
driven through its external-loop API rather than ``loop_start``, which costs two loopback sends per message
received) only queues what arrives,
and ``settle()`` (called by the clock after every stage) publishes a marker on the bus's private sync topic and
dispatches, in the caller's thread and in arrival order, everything that arrived before the marker came back.
Mosquitto forwards one connection's QoS 1 messages in order, so after ``settle()`` every message a stage
published has reached every subscriber of this process — the same state ``LocalBus`` reaches synchronously.
Messages of external parties (HIL devices or controllers) are dispatched at the next barrier.

Transport: QoS 1 (``streams.contract.QOS``), a persistent session (clean_start False, session expiry > 0 —
Mosquitto 2.0.11 only keeps an MQTT 5 session across a restart when the *first* connect did so), TCP no-delay,
reconnect with short back-off, subscriptions renewed on every connect. While the filters of a bus do not
overlap (the twin's never do), a message is routed by its topic; once two overlap, every subscription gets its
own MQTT 5 subscription identifier, so a message matching both still reaches each handler once (identifiers
cost paho a property parse per message: a third of its receive time, which is why they are not always on).
A QoS 1 redelivery (DUP flag) of a payload this bus already received on the same topic is dropped and counted,
so at-least-once delivery across a broker restart does not repeat a command or a reading.

Protocol: MQTT 5 by default; ``?protocol=3.1.1`` on the URL (``MqttSettings.protocol``) speaks MQTT 3.1.1 for
bulk meter ingest — paho builds a ``Properties`` object for every MQTT 5 PUBLISH it receives, about 25 µs, which
is a third of its receive cost (``benchmarks/mqtt.py`` prints both). With 3.1.1 the session is kept by
``clean_session=False`` and ended on ``close()``; there are no subscription identifiers, so overlapping filters
are refused on that protocol.

Faults: every paho callback is guarded (an exception would silently end paho's network thread). A payload that
is not valid JSON, does not fit its topic's model, or names another device or feeder than its topic is
published to ``.../deadletter`` with the reason and counted in ``deadletters``; it never reaches a handler.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import queue
import secrets
import socket
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Concatenate, Literal, ParamSpec
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from streams import topics
from streams.bus import Handler
from streams.contract import ContractError, decode, qos_of
from streams.errors import StreamError
from streams.messages import DeadLetter, DeadLetterReason, DeviceCommand, Message
from streams.mqtt.loop import NetworkLoop
from streams.ticks import TickGaps

log = logging.getLogger(__name__)
_SYNC_ROOT = f"{topics.ROOT}/_bus/sync"
_WAIT_LOG_S = 5.0
_OUTBOUND_WINDOW = 1024
"""Unacknowledged messages above which the front of the in-flight list is pruned (and, not in real time, the
publisher waits for the broker)."""
_RECENT_MAX = 20_000
FLAP_DISCONNECTS = 3
FLAP_WINDOW_S = 60.0
_TOO_LARGE = b"\x00too large"
"""Put in the inbox in place of a payload above ``max_payload_bytes`` (never parsed, never kept in memory)."""
"""Payload hashes remembered to drop DUP redeliveries: a redelivery repeats what was in flight (Mosquitto keeps 20
messages in flight per client by default, paho here 1,000), so this is ample and keeps memory flat."""
Protocol = Literal["5", "3.1.1"]
_PROTOCOLS: dict[str, mqtt.MQTTProtocolVersion] = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


def _acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """The broker acknowledged the message. paho's ``is_published()`` raises for a message queued while the
    client was disconnected, even after it was resent and acknowledged; its flag tells the truth."""
    return bool(getattr(info, "_published", False))


class BusError(StreamError):
    """The broker cannot be reached or did not answer in time."""


@dataclass(frozen=True)
class MqttSettings:
    """Where the broker is and how to talk to it; ``from_url("mqtt://user:pass@host:1883")``, ``mqtts://`` = TLS,
    ``?protocol=3.1.1`` = MQTT 3.1.1 instead of 5."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 600
    connect_timeout_s: float = 10.0
    settle_timeout_s: float = 120.0
    reconnect_min_s: int = 1
    reconnect_max_s: int = 4
    protocol: Protocol = "5"
    outbound_max: int = 50_000
    """Messages sent and not yet acknowledged that paho may hold; beyond, a publish is dropped and counted."""
    max_payload_bytes: int = 4 * 1024 * 1024
    """Larger payloads are neither sent nor parsed (dead-lettered as too_large); the shipped broker's
    ``max_packet_size`` is the same."""
    settle_budget_s: float | None = None
    """Real time (``MqttBus.realtime``): how long ``settle`` waits for the broker; None = as long as it takes."""

    def __post_init__(self) -> None:
        if self.protocol not in _PROTOCOLS:
            raise BusError(f"MQTT protocol {self.protocol!r} is not supported; expected one of {', '.join(_PROTOCOLS)}")

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MqttSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise BusError(f"bus URL {url!r}: scheme {parts.scheme!r} is not supported; expected mqtt:// or mqtts://")
        try:
            port = parts.port
        except ValueError as err:
            raise BusError(f"bus URL {url!r}: the port is not a number between 0 and 65535") from err
        if not parts.hostname:
            raise BusError(f"bus URL {url!r} has no host; expected mqtt://host:port")
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - {"protocol", "keepalive"})
        if unknown:
            raise BusError(f"bus URL {url!r}: unknown query parameter(s) {', '.join(unknown)}; expected protocol= "
                           "or keepalive=")
        protocol = query.get("protocol", ["5"])[-1]
        if protocol not in _PROTOCOLS:
            raise BusError(f"bus URL {url!r}: protocol={protocol!r} is not supported; expected 5 or 3.1.1")
        if "keepalive" in query:
            keepalive = query["keepalive"][-1]
            if not keepalive.isdigit() or not 1 <= int(keepalive) <= 65535:
                raise BusError(f"bus URL {url!r}: keepalive={keepalive!r} is not a whole number of seconds 1..65535")
            overrides = {"keepalive_s": int(keepalive), **overrides}
        return cls(host=parts.hostname, port=port or (8883 if parts.scheme == "mqtts" else 1883),
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   tls=parts.scheme == "mqtts", protocol=protocol, **overrides)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        suffix = "" if self.protocol == "5" else f"?protocol={self.protocol}"
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}{suffix}"

    @property
    def mqtt5(self) -> bool:
        return self.protocol == "5"


@dataclass
class MqttCounters:
    published: int = 0
    received: int = 0
    dispatched: int = 0
    deadletters: int = 0
    deadletter_reasons: Counter[str] = field(default_factory=Counter)
    callback_errors: int = 0
    loop_errors: int = 0
    """Unexpected exceptions the network loop caught (logged) and survived."""
    redeliveries_dropped: int = 0
    """QoS 1 redeliveries (DUP flag) of a payload already received on the same topic: at-least-once made once."""
    connects: int = 0
    disconnects: int = 0
    settles: int = 0
    broker_ok: bool = True
    """The broker answers: our sync markers come back within one keep-alive (real time)."""
    broker_stalls: int = 0
    """Times the broker was found frozen or partitioned (a marker unanswered for a keep-alive)."""
    broker_stalled_s: float = 0.0
    """Total time from each stall's detection to the broker's next answer."""
    stall_detected_after_s: float = 0.0
    """Longest time from the first unanswered marker to a stall's detection (at most ~one keep-alive + a tick)."""
    settles_short: int = 0
    """Real-time settles that returned without the broker's answer (what it had not delivered comes later)."""
    outbound_queued: int = 0
    """Messages sent and not yet acknowledged by the broker (updated at each settle)."""
    outbound_max_queued: int = 0
    outbound_dropped: int = 0
    """Messages dropped because paho's outbound queue held ``outbound_max`` already."""
    connect_flap_alarms: int = 0
    """Times the connection dropped ``FLAP_DISCONNECTS`` times within ``FLAP_WINDOW_S`` (a client-id takeover?)."""
    too_large_dropped: int = 0
    """Messages not sent because their payload was above ``max_payload_bytes``."""
    sessions_lost: int = 0
    """Reconnects that found no session at the broker (restarted without persistence, or the session expired):
    what the broker held for this client, and what was published before it subscribed again, is lost."""
    tick_gaps: int = 0
    """Gaps in the per-tick streams this bus watches (``watch_ticks``)."""
    ticks_missed: int = 0
    """Ticks those gaps skipped."""


@dataclass
class _Subscription:
    pattern: str
    sub_id: int
    handlers: list[Handler]


_P = ParamSpec("_P")


def _guarded(callback: Callable[Concatenate[MqttBus, _P], None]) -> Callable[Concatenate[MqttBus, _P], None]:
    """A paho callback that cannot end paho's network thread: an exception it raises is counted and logged
    (``MqttBus._guarded_failure``, naming the callback) instead of escaping into the thread."""
    where = callback.__name__.removeprefix("_")

    @functools.wraps(callback)
    def guarded(bus: MqttBus, /, *args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            callback(bus, *args, **kwargs)
        except Exception:
            bus._guarded_failure(where)

    return guarded


class MqttBus:
    """``Bus`` over MQTT. Use ``settle()`` to dispatch; ``pump(timeout_s)`` to dispatch whatever arrives."""

    def __init__(self, settings: MqttSettings, *, client_id: str | None = None, name: str = "twin",
                 immediate: bool = False, resume_session: bool = False) -> None:
        """``immediate``: dispatch each message in paho's network thread as it arrives, without barriers — for a
        process with one role that answers at once (a device adapter); handlers must then be thread-safe.
        ``resume_session``: ``client_id``'s session of an earlier connection is expected at the broker (a
        persistent subscriber back after a restart): finding none at the first connect is a lost session too."""
        self.settings = settings
        self._resume_session = resume_session
        self._immediate = immediate
        self.client_id = client_id or f"phasetwin-{name}-{uuid.uuid4().hex[:12]}"
        self.counters = MqttCounters()
        self._inbox: queue.SimpleQueue[tuple[str, bytes, tuple[int, ...], float]] = queue.SimpleQueue()
        self._subs: dict[str, _Subscription] = {}
        self._by_id: dict[int, _Subscription] = {}
        self._routes: dict[str, list[_Subscription]] = {}
        self._use_ids = False
        self._in_flight: deque[mqtt.MQTTMessageInfo] = deque()
        self._connected = threading.Event()
        self._suback = threading.Condition()
        self._pending_subacks: set[int] = set()
        self._failed_subacks: dict[int, str] = {}
        # A random name, never the client id: a client that reads the sync topics must not learn the id it could
        # take over (with use_username_as_clientid the broker would refuse that anyway).
        self._sync_topic = f"{_SYNC_ROOT}/{secrets.token_hex(8)}"
        self._disconnected_at: deque[float] = deque(maxlen=FLAP_DISCONNECTS)
        self._sync_seq = 0
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._marker_out: int | None = None
        self._marker_sent_s = 0.0
        self._stalled_since_s: float | None = None
        self.arrival_s: float | None = None
        """``time.monotonic()`` at which paho received the message being dispatched (for latency figures)."""
        self.payload: bytes | None = None
        """The raw payload of the message being dispatched (a quarantine keeps it as received)."""
        self._closed = False
        self._last_connect_error = ""
        self._client = self._make_client()
        self._loop = NetworkLoop(self._client, name=name, reconnect_min_s=settings.reconnect_min_s,
                                 reconnect_max_s=settings.reconnect_max_s, on_error=self._count_loop_error)
        self._connect()

    # -- Bus interface ---------------------------------------------------------------------------------
    def publish(self, topic: str, message: Message) -> None:
        payload = message.model_dump_json().encode()
        if len(payload) > self.settings.max_payload_bytes:
            self.counters.too_large_dropped += 1
            log.error("mqtt: not sent: a %s of %d bytes on %s is above max_payload_bytes %d", type(message).__name__,
                      len(payload), topic, self.settings.max_payload_bytes)
            return
        properties = None
        if isinstance(message, DeviceCommand) and self.settings.mqtt5:
            # A command nobody took before it expires must not be delivered later (a device back from a long
            # absence, a persistent session): the broker drops it after its lifetime.
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = max(1, math.ceil(
                (message.expires_utc - message.issued_utc).total_seconds()))
        self._publish_raw(topic, payload, qos_of(topic), properties)

    def subscribe(self, pattern: str, handler: Handler) -> None:
        sub = self._subs.get(pattern)
        if sub is not None:
            sub.handlers.append(handler)
            return
        sub = _Subscription(pattern=pattern, sub_id=len(self._subs) + 2, handlers=[handler])  # id 1 = sync
        overlapping = [p for p in self._subs if topics.filters_overlap(pattern, p)]
        if overlapping and not self.settings.mqtt5:
            raise BusError(f"the filter {pattern!r} overlaps {overlapping[0]!r}: a message matching both could not "
                           f"be told apart without MQTT 5 subscription identifiers; use protocol 5 on this bus")
        if not self._use_ids and overlapping:
            # From now on the broker must say which subscription a message is for; renew the others with ids.
            self._use_ids = True
            for other in self._subs.values():
                self._broker_subscribe(other.pattern, other.sub_id, wait=True)
        self._subs[pattern] = sub
        self._by_id[sub.sub_id] = sub
        self._routes.clear()
        self._broker_subscribe(pattern, sub.sub_id, wait=True)

    def watch_ticks(self, pattern: str, gaps: TickGaps | None = None) -> TickGaps:
        """Check that every tick of the per-tick stream on ``pattern`` (messages with a ``tick``) arrives: a gap is
        counted (``tick_gaps``, ``ticks_missed``) and logged. A persistent subscriber thus hears of ticks a broker
        restart without persistence lost, not only of the lost session. ``gaps``: the record of an earlier
        connection of the same subscriber, continued."""
        gaps = gaps if gaps is not None else TickGaps(what=f"{pattern} at {self.client_id}")

        def seen(topic: str, message: Message) -> None:
            tick = getattr(message, "tick", None)
            if isinstance(tick, int) and (missed := gaps.seen(tick)):
                self.counters.tick_gaps += 1
                self.counters.ticks_missed += missed

        self.subscribe(pattern, seen)
        return gaps

    def close(self, *, end_session: bool = True) -> None:
        """Wait until the broker acknowledged every QoS 1 message sent, then disconnect and end the session
        (``end_session=False``: the broker keeps it, and queues what arrives for it, as after a crash)."""
        if self._closed:
            return
        self._closed = True
        unacked = self.unacknowledged(wait_s=self.settings.settle_timeout_s)
        if unacked:
            log.error("mqtt: %d message(s) were not acknowledged by %s before close", unacked, self.settings.url)
        self._loop.finish()
        props = None
        if self.settings.mqtt5 and end_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        with contextlib.suppress(Exception):
            self._client.disconnect(properties=props)
            self._loop.wake()
            deadline = time.monotonic() + self.settings.connect_timeout_s
            while self._client.socket() is not None and time.monotonic() < deadline:
                time.sleep(0.001)
        self._loop.stop(self.settings.connect_timeout_s)
        if not self.settings.mqtt5 and end_session:
            self._end_311_session()
        if self.counters.deadletters:
            log.warning("mqtt: %d payload(s) went to the dead-letter topic: %s", self.counters.deadletters,
                        dict(self.counters.deadletter_reasons))

    def unacknowledged(self, *, wait_s: float = 0.0, below: int = 1) -> int:
        """QoS 1 messages the broker has not acknowledged yet, after waiting up to ``wait_s`` for fewer than
        ``below`` of them to remain."""
        deadline = time.monotonic() + wait_s
        while len(self._in_flight) >= below:
            if _acknowledged(self._in_flight[0]):
                self._in_flight.popleft()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(remaining, 0.005))
        return len(self._in_flight)

    # -- dispatch --------------------------------------------------------------------------------------
    def realtime(self, *, budget_s: float) -> None:
        """From now on ``settle`` never waits longer than ``budget_s`` for the broker (a real-time tick loop)."""
        self.settings = dataclasses.replace(self.settings, settle_budget_s=budget_s)

    def settle(self) -> None:
        """Dispatch everything published so far (by anyone) that the broker delivered before a fresh marker;
        repeat while handlers publish more. Blocks through broker outages up to ``settle_timeout_s`` — or, in
        real time (``settle_budget_s``), waits at most that long and not at all while an earlier marker is still
        out (see ``_settle_realtime``)."""
        if self.settings.settle_budget_s is not None:
            self._settle_realtime(self.settings.settle_budget_s)
            return
        while True:
            published_before = self.counters.published
            self._sync_seq += 1
            marker = self._sync_seq
            self._publish_raw(self._sync_topic, str(marker).encode(), 1)
            self._drain_until(marker)
            self.counters.settles += 1
            if self.counters.published == published_before + 1:
                return

    def _settle_realtime(self, budget_s: float) -> None:
        """Real-time settle: never waits on the network for more than ``budget_s``. While the broker lags (a marker
        is out), dispatch only what has arrived; a marker unanswered for a keep-alive means the broker is frozen
        or partitioned: counted, logged, ``broker_ok`` False until it answers. Messages sent meanwhile stay in
        paho's bounded queue and go out (QoS 1) when it is back."""
        now = time.monotonic()
        deadline = now + budget_s
        while True:
            if self._marker_out is not None and now - self._marker_sent_s > self.settings.keepalive_s \
                    and not self.counters.broker_ok:
                self._marker_out = None  # ask again: the one out may have been lost with a broker that restarted
            if self._marker_out is None:
                published_before = self.counters.published
                self._sync_seq += 1
                self._marker_out, self._marker_sent_s = self._sync_seq, now
                self._publish_raw(self._sync_topic, str(self._sync_seq).encode(), 1)
                fresh = True
            else:
                fresh = False
            back = self._drain_realtime(deadline if fresh else now)
            self.counters.settles += 1
            now = time.monotonic()
            self.unacknowledged()
            self.counters.outbound_queued = len(self._in_flight)
            self.counters.outbound_max_queued = max(self.counters.outbound_max_queued, len(self._in_flight))
            if not back:
                self.counters.settles_short += 1
                waited_s = now - self._marker_sent_s
                if self.counters.broker_ok and waited_s > self.settings.keepalive_s:
                    self.counters.broker_ok = False
                    self.counters.broker_stalls += 1
                    self.counters.stall_detected_after_s = max(self.counters.stall_detected_after_s, waited_s)
                    self._stalled_since_s = now
                    log.error("mqtt: the broker %s has not answered for %.1f s (keep-alive %d s): frozen or "
                              "partitioned; ticks go on, %d message(s) wait to be sent", self.settings.url, waited_s,
                              self.settings.keepalive_s, len(self._in_flight))
                return
            if not fresh or self.counters.published == published_before + 1 or now >= deadline:
                return

    def _next_arrival(self, deadline_s: float) -> tuple[str, bytes, tuple[int, ...], float] | None:
        """The next message of the inbox, waited for until ``deadline_s`` (monotonic) at the most; None if none."""
        remaining = deadline_s - time.monotonic()
        try:
            return self._inbox.get(timeout=remaining) if remaining > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return None

    def _drain_realtime(self, deadline_s: float) -> bool:
        """Dispatch arrivals until the marker out comes back (True) or ``deadline_s`` passes (False)."""
        while True:
            item = self._next_arrival(deadline_s)
            if item is None:
                return False
            topic, payload, _, _ = item
            if topic != self._sync_topic:
                self._dispatch(*item)
                continue
            if self._marker_back(payload):
                return True

    def _marker_back(self, payload: bytes) -> bool:
        """Whether ``payload`` (on the sync topic) is the real-time marker out; if so, it is no longer out and a
        stalled broker answers again."""
        if self._marker_out is None or payload != str(self._marker_out).encode():
            return False
        self._marker_out = None
        if not self.counters.broker_ok:
            assert self._stalled_since_s is not None
            stalled_s = time.monotonic() - self._stalled_since_s
            self.counters.broker_stalled_s += stalled_s
            self.counters.broker_ok = True
            log.warning("mqtt: the broker %s answers again after %.1f s", self.settings.url, stalled_s)
        return True

    def pump_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Dispatch messages as they arrive until ``done()`` or ``timeout_s`` passes; whether ``done()`` (a role
        waiting in real time for what it still lacks, e.g. the grid for its tick's readings). A real-time marker
        that comes back meanwhile is taken as ``settle`` would."""
        deadline = time.monotonic() + timeout_s
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                item = self._inbox.get(timeout=remaining)
            except queue.Empty:
                return done()
            if item[0] == self._sync_topic:
                self._marker_back(item[1])
                continue
            self._dispatch(*item)
        return True

    def pump(self, timeout_s: float) -> int:
        """Dispatch messages as they arrive for up to ``timeout_s`` (0: only what is already here)."""
        deadline = time.monotonic() + timeout_s
        n = 0
        while (item := self._next_arrival(deadline)) is not None:
            self._dispatch(*item)
            n += 1
        return n

    def _drain_until(self, marker: int) -> None:
        started = time.monotonic()
        next_log = started + _WAIT_LOG_S
        while True:
            try:
                item = self._inbox.get(timeout=0.5)
            except queue.Empty:
                now = time.monotonic()
                if now - started > self.settings.settle_timeout_s:
                    raise BusError(
                        f"the broker {self.settings.url} did not deliver the bus's sync marker within "
                        f"{self.settings.settle_timeout_s:g} s ({self._last_connect_error or 'connected'})"
                    ) from None
                if now > next_log:
                    log.warning("mqtt: waiting for the broker %s (%.0f s so far; %s)", self.settings.url,
                                now - started, "connected" if self._connected.is_set() else "disconnected")
                    next_log = now + _WAIT_LOG_S
                continue
            topic, payload, _, _ = item
            if topic == self._sync_topic:
                if payload == str(marker).encode():
                    return
                continue  # an older marker delivered twice after a reconnect
            self._dispatch(*item)

    def _dispatch(self, topic: str, payload: bytes, sub_ids: tuple[int, ...], arrival_s: float) -> None:
        if topic == self._sync_topic:
            return
        if payload is _TOO_LARGE:
            self._dead_letter(topic, DeadLetterReason.TOO_LARGE, f"payload above max_payload_bytes "
                              f"{self.settings.max_payload_bytes}; not parsed", b"")
            return
        self.arrival_s = arrival_s
        try:
            message = decode(topic, payload)
        except ContractError as err:
            self._dead_letter(topic, err.code, err.reason, payload)
            return
        self.payload = payload
        if self._use_ids:
            subs = [self._by_id[i] for i in sub_ids if i in self._by_id]
        else:
            subs = self._routes.get(topic)  # type: ignore[assignment]
            if subs is None:
                subs = self._routes[topic] = [s for s in self._subs.values() if topics.matches(s.pattern, topic)]
        for sub in subs:
            for handler in sub.handlers:
                handler(topic, message)
        self.counters.dispatched += 1

    def _dead_letter(self, topic: str, code: DeadLetterReason, reason: str, payload: bytes) -> None:
        self.counters.deadletters += 1
        self.counters.deadletter_reasons[code.value] += 1
        log.info("mqtt: dead letter from %s: %s (%s)", topic, code.value, reason)
        parts = topic.split("/")
        feeder = parts[2] if len(parts) > 3 and f"{parts[0]}/{parts[1]}" == topics.ROOT else ""
        try:
            target = topics.deadletter(feeder)
        except ValueError:
            return  # counted above; a topic outside the contract has no feeder to report to
        if topic == target:
            return  # never answer a bad dead letter with another one
        letter = DeadLetter(topic=topic, reason=code, detail=reason[:1000],
                            payload=payload[:1000].decode(errors="replace"), received_utc=datetime.now(UTC))
        self._publish_raw(target, letter.model_dump_json().encode(), 1)

    # -- paho ------------------------------------------------------------------------------------------
    def _make_client(self, *, clean_session: bool = False) -> mqtt.Client:
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=_PROTOCOLS[self.settings.protocol], reconnect_on_failure=True,
                             clean_session=None if self.settings.mqtt5 else clean_session)
        if self.settings.username is not None:
            client.username_pw_set(self.settings.username, self.settings.password)
        if self.settings.tls:
            client.tls_set(ca_certs=self.settings.ca_file)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(self.settings.outbound_max)
        client.reconnect_delay_set(self.settings.reconnect_min_s, self.settings.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        return client

    def _end_311_session(self) -> None:
        """MQTT 3.1.1 has no session expiry: a clean connect under the same client id removes the session."""
        client = self._make_client(clean_session=True)
        client.on_connect = client.on_disconnect = client.on_message = client.on_subscribe = None
        try:
            client.connect(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
            client.loop_start()
            deadline = time.monotonic() + self.settings.connect_timeout_s
            while not client.is_connected() and time.monotonic() < deadline:
                time.sleep(0.002)
            client.disconnect()
            client.loop_stop()
        except OSError as err:
            log.warning("mqtt: could not end the MQTT 3.1.1 session of %s on %s: %s", self.client_id,
                        self.settings.url, err)

    def _connect(self) -> None:
        if self.settings.mqtt5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.settings.session_expiry_s
            session: dict[str, Any] = {"clean_start": False, "properties": props}
        else:
            session = {}
        try:
            self._client.connect(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s,
                                 **session)
        except OSError as err:
            self._loop.stop(0)
            raise BusError(f"cannot connect to the MQTT broker {self.settings.url}: {err}") from err
        self._loop.start()
        if not self._connected.wait(self.settings.connect_timeout_s):
            self._loop.stop(self.settings.connect_timeout_s)
            sock = self._client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
            raise BusError(f"the MQTT broker {self.settings.url} did not accept the connection within "
                           f"{self.settings.connect_timeout_s:g} s: {self._last_connect_error or 'no answer'}")
        self._broker_subscribe(self._sync_topic, 1, wait=True)

    def _broker_subscribe(self, pattern: str, sub_id: int, *, wait: bool) -> None:
        if self.settings.mqtt5:
            props = Properties(PacketTypes.SUBSCRIBE)
            if self._use_ids:
                props.SubscriptionIdentifier = sub_id
            request: dict[str, Any] = {"options": SubscribeOptions(qos=1, noLocal=False), "properties": props}
        else:
            request = {"qos": 1}
        if not wait:
            self._client.subscribe(pattern, **request)
            self._loop.wake()
            return
        # Held across the request so that the SUBACK callback cannot run before its mid is registered.
        with self._suback:
            rc, mid = self._client.subscribe(pattern, **request)
            self._loop.wake()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                log.warning("mqtt: subscribe to %s deferred until the broker is back (%s)", pattern, rc)
                return
            self._pending_subacks.add(mid)
            if not self._suback.wait_for(lambda: mid not in self._pending_subacks, self.settings.connect_timeout_s):
                self._pending_subacks.discard(mid)
                raise BusError(f"the broker {self.settings.url} did not confirm the subscription to {pattern!r}")
            failure = self._failed_subacks.pop(mid, None)
        if failure:
            raise BusError(f"the broker {self.settings.url} refused the subscription to {pattern!r}: {failure}")

    def _publish_raw(self, topic: str, payload: bytes, qos: int, properties: Properties | None = None) -> None:
        info = self._client.publish(topic, payload, qos=qos, properties=properties)
        self._loop.wake()
        if qos and info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._in_flight.append(info)
            if len(self._in_flight) > _OUTBOUND_WINDOW:
                self.unacknowledged()  # drop the acknowledged ones from the front
                if len(self._in_flight) > _OUTBOUND_WINDOW and self.settings.settle_budget_s is None \
                        and self._connected.is_set():
                    # As fast as possible (not real time): let the broker catch up rather than hold a flood of
                    # unacknowledged messages in memory (each costs paho ~2 KB until its PUBACK).
                    self.unacknowledged(wait_s=self.settings.settle_timeout_s, below=_OUTBOUND_WINDOW // 2)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self.counters.outbound_dropped += 1
            if self.counters.outbound_dropped == 1 or self.counters.outbound_dropped % 10_000 == 0:
                log.error("mqtt: outbound queue full (%d messages unacknowledged by %s): %d message(s) dropped so "
                          "far, this one for %s", self.settings.outbound_max, self.settings.url,
                          self.counters.outbound_dropped, topic)
            return
        self.counters.published += 1

    @_guarded
    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @_guarded
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            self._last_connect_error = f"refused: {reason}"
            log.error("mqtt: %s refused the connection: %s", self.settings.url, reason)
            return
        self.counters.connects += 1
        if self.counters.connects > 1:
            log.warning("mqtt: reconnected to %s (session present: %s)", self.settings.url,
                        flags.session_present)
        if (self.counters.connects > 1 or self._resume_session) and not flags.session_present:
            self.counters.sessions_lost += 1
            log.error("mqtt: gap: the broker %s kept no session for %s (restarted without persistence, or the "
                      "session expired): messages it held for this client, and those published before the "
                      "subscriptions are renewed, are lost (%d session(s) lost so far)",
                      self.settings.url, self.client_id, self.counters.sessions_lost)
        self._last_connect_error = ""
        # Renew every subscription: the broker may have lost the session (expired, or not persisted).
        self._broker_subscribe(self._sync_topic, 1, wait=False)
        for sub in list(self._subs.values()):
            self._broker_subscribe(sub.pattern, sub.sub_id, wait=False)
        self._connected.set()

    @_guarded
    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        self._connected.clear()
        if not self._closed:
            self.counters.disconnects += 1
            self._flap_check()
            self._last_connect_error = f"disconnected: {reason}"
            log.warning("mqtt: lost the broker %s (%s); reconnecting", self.settings.url, reason)

    def _flap_check(self) -> None:
        """Alarm when the connection drops ``FLAP_DISCONNECTS`` times within ``FLAP_WINDOW_S``: a broker that keeps
        restarting, or another client taking over this client id."""
        now = time.monotonic()
        self._disconnected_at.append(now)
        if len(self._disconnected_at) == FLAP_DISCONNECTS and now - self._disconnected_at[0] <= FLAP_WINDOW_S:
            self.counters.connect_flap_alarms += 1
            self._disconnected_at.clear()
            log.error("mqtt: ALARM: the connection to %s dropped %d times within %g s (%d disconnects so far): is "
                      "another client taking over the client id %r, or the broker restarting?", self.settings.url,
                      FLAP_DISCONNECTS, FLAP_WINDOW_S, self.counters.disconnects, self.client_id)

    @_guarded
    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if len(msg.payload) > self.settings.max_payload_bytes:
            self.counters.received += 1
            self._inbox.put((msg.topic, _TOO_LARGE, (), time.monotonic()))
            return
        key = hash((msg.topic, msg.payload))
        if msg.dup and key in self._recent:
            self.counters.redeliveries_dropped += 1
            return
        self._recent[key] = None
        if len(self._recent) > _RECENT_MAX:
            self._recent.popitem(last=False)
        ids = getattr(msg.properties, "SubscriptionIdentifier", None) if msg.properties is not None else None
        self.counters.received += 1
        if self._immediate and msg.topic != self._sync_topic:
            self._dispatch(msg.topic, bytes(msg.payload), tuple(ids or ()), time.monotonic())
            return
        self._inbox.put((msg.topic, bytes(msg.payload), tuple(ids or ()), time.monotonic()))

    @_guarded
    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            log.error("mqtt: the broker refused a publish (mid %d): %s", mid, reason)

    @_guarded
    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                      properties: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        with self._suback:
            if mid not in self._pending_subacks:
                if failed:
                    log.error("mqtt: renewed subscription refused (mid %d): %s", mid, failed)
                return
            if failed:
                self._failed_subacks[mid] = ", ".join(failed)
                log.error("mqtt: subscription refused (mid %d): %s", mid, failed)
            self._pending_subacks.discard(mid)
            self._suback.notify_all()

    def _count_loop_error(self) -> None:
        self.counters.loop_errors += 1

    def _guarded_failure(self, where: str) -> None:
        self.counters.callback_errors += 1
        log.exception("mqtt: error in %s (caught so that paho's network thread keeps running)", where)
