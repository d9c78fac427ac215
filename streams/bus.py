"""The bus every role talks through, and its in-process implementation.

``LocalBus`` delivers synchronously, in subscription order, inside ``publish``: the publisher's SimPy process
is the one that runs the handlers, so delivery order is the SimPy order and runs are deterministic. Objects are
passed as they are, without serialisation.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from streams.messages import Message
from streams.topics import matches

Handler = Callable[[str, Message], None]
log = logging.getLogger(__name__)


class Bus(Protocol):
    def publish(self, topic: str, message: Message) -> None:
        """Send ``message`` to every subscriber whose filter matches ``topic``."""
        ...

    def subscribe(self, pattern: str, handler: Handler) -> None:
        """Call ``handler(topic, message)`` for every message on a topic matching the MQTT filter ``pattern``."""
        ...

    def settle(self) -> None:
        """Deliver everything published so far before returning (the clock calls it after every stage)."""
        ...

    def close(self) -> None: ...


class LocalBus:
    """In-process bus. ``published`` counts messages per topic filter-free; ``unrouted`` those nobody took."""

    def __init__(self) -> None:
        self._subscriptions: list[tuple[str, Handler]] = []
        self._routes: dict[str, list[Handler]] = {}
        self.published = 0
        self.unrouted: Counter[str] = Counter()

    def subscribe(self, pattern: str, handler: Handler) -> None:
        self._subscriptions.append((pattern, handler))
        self._routes.clear()

    def publish(self, topic: str, message: Message) -> None:
        handlers = self._routes.get(topic)
        if handlers is None:
            handlers = [h for p, h in self._subscriptions if matches(p, topic)]
            self._routes[topic] = handlers
        self.published += 1
        if not handlers:
            self.unrouted[topic] += 1
            return
        for handler in handlers:
            handler(topic, message)

    def settle(self) -> None:
        """Nothing to do: ``publish`` has already delivered."""

    def close(self) -> None:
        # The subscribers hold the bus and the bus holds them: dropping the handlers lets a finished run's objects
        # go by reference counting, not at the next full collection (studies run many replays in one process).
        self._subscriptions.clear()
        self._routes.clear()
        if self.unrouted:
            log.debug("LocalBus closed; %d topic(s) had messages with no subscriber", len(self.unrouted))


class BusWrapper:
    """A bus in front of another (``inner``): it delegates what it does not change, attributes included (an MQTT
    bus's counters stay readable through any number of wrappers)."""

    def __init__(self, inner: Bus) -> None:
        self.inner = inner

    def publish(self, topic: str, message: Message) -> None:
        self.inner.publish(topic, message)

    def subscribe(self, pattern: str, handler: Handler) -> None:
        self.inner.subscribe(pattern, handler)

    def settle(self) -> None:
        self.inner.settle()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
