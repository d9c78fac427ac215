"""Plain paho MQTT clients for the external parties of the HIL tests (devices, controllers, watchers written from
docs/contract alone): nothing here imports phasetwin."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def started_client(host: str, port: int, *, name: str, topics: Sequence[str],
                   on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None],
                   login: tuple[str, str] | None = None) -> mqtt.Client:
    """An MQTT v5 client (id ``name-<random>``), logged in as ``login`` (user, password) when given, subscribed to
    ``topics`` at QoS 1 on every connect, connected to ``host:port`` and looping in its own thread."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"{name}-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    if login is not None:
        client.username_pw_set(*login)
    client.on_message = on_message
    client.on_connect = lambda c, *a: [c.subscribe(t, qos=1) for t in topics]
    client.connect(host, port)
    client.loop_start()
    return client


def stop_client(client: mqtt.Client) -> None:
    """Disconnect while the loop still runs, so the DISCONNECT goes out and the socket closes before the loop
    ends (a socket left open is reported at a later garbage collection, in whichever test runs then)."""
    client.disconnect()
    client.loop_stop()
