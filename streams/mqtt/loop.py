"""paho's network I/O on a thread of our own, through paho's external-event-loop API (``loop_read``,
``loop_write``, ``loop_misc``, ``on_socket_register_write``).

Why not ``loop_start()``: paho's thread wakes its ``select`` through a loopback TCP socket pair, and does so for
every packet it queues — including the PUBACK it queues, from inside that very thread, for each QoS 1 message it
receives. That is two loopback TCP sends per received message, a quarter of paho's receive cost
(``benchmarks/mqtt.py``). This loop reads a burst of packets, then writes what they queued, and is woken (through
a Unix socket pair) only by packets queued from other threads. It also does what ``loop_start`` did besides:
keep-alive (``loop_misc``) and reconnecting with back-off after a lost connection.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

log = logging.getLogger(__name__)
_READ_BURST = 64
"""Packets read before what they queued (acks, answers of immediate handlers) is written."""
_IDLE_S = 1.0
"""Longest ``select`` wait: keep-alive and reconnect checks run at least this often."""


class NetworkLoop:
    """Runs one paho client's network I/O until ``stop()``; ``finish()`` first when the client disconnects on
    purpose, so that a closed socket is not taken for a lost connection."""

    def __init__(self, client: mqtt.Client, *, name: str, reconnect_min_s: float, reconnect_max_s: float,
                 on_error: Callable[[], None] = lambda: None) -> None:
        """``on_error`` is called (on the loop's thread) for every unexpected exception the loop survived."""
        self._client = client
        self._on_error = on_error
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._finishing = False
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{name}", daemon=True)
        self._ident: int | None = None
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = None

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Make the loop look at paho's queue now (a no-op from the loop's own thread, which always does)."""
        if threading.get_ident() == self._ident:
            return
        with contextlib.suppress(BlockingIOError, OSError):  # a full pipe already holds a wake-up
            self._wake_w.send(b"\0")

    def finish(self) -> None:
        """From now on a closed socket means the end: do not reconnect."""
        self._finishing = True

    def stop(self, timeout_s: float) -> None:
        self._finishing = True
        self._stop.set()
        self.wake()
        if self._thread.is_alive() and threading.get_ident() != self._ident:
            self._thread.join(timeout_s)
        self._wake_r.close()
        self._wake_w.close()

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.wake()

    def _run(self) -> None:
        self._ident = threading.get_ident()
        delay_s = self._reconnect_min_s
        while not self._stop.is_set():
            try:
                sock = self._client.socket()
                if sock is None:
                    if self._finishing or self._stop.wait(delay_s):
                        return
                    reconnected = self._reconnect()
                    delay_s = self._reconnect_min_s if reconnected else min(delay_s * 2, self._reconnect_max_s)
                    continue
                self._turn(sock)
            except Exception:
                # Never let the thread die silently: a failure here would stop every message of the process.
                log.exception("mqtt: error in the network loop; continuing")
                with contextlib.suppress(Exception):
                    self._on_error()
                self._stop.wait(0.05)

    def _turn(self, sock: Any) -> None:
        wlist = [sock] if self._client.want_write() else []
        try:
            readable, _, _ = select.select([sock, self._wake_r], wlist, [], _IDLE_S)
        except (OSError, ValueError):  # the socket was closed under us; the next turn sees it
            return
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_r.recv(4096)
        if sock in readable:
            fd = sock.fileno()
            for _ in range(_READ_BURST):
                if self._client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or self._client.socket() is not sock:
                    return
                more, _, _ = select.select([fd], [], [], 0)
                if not more:
                    break
        if self._client.want_write() and self._client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return
        self._client.loop_misc()

    def _reconnect(self) -> bool:
        try:
            self._client.reconnect()
        except OSError as err:
            log.debug("mqtt: reconnect failed: %s", err)
            return False
        return True
