"""The shipped Mosquitto security (docker/mosquitto: config, ACL, password script) holds on a real broker.

```
docker/mosquitto/mosquitto.conf ─► secure_config() ─► Mosquitto 2.0.11 on 127.0.0.1 ◄── paho (MQTT 5, QoS 1)
docker/mosquitto/acl ────────────────────────────────┘         ▲                           twin, controller,
docker/mosquitto/make-passwd.sh ─► password file ──────────────┘                           recorder, psd-1, psd-2
```
A refused publish is proven twice: the broker answers PUBACK 0x87 (Not authorized), and a subscriber that may
read the topic gets a sentinel published after it, but never the refused message. A message a client must
not read is proven absent the same way: a sentinel it may read, published after it, arrives alone.
"""

from __future__ import annotations

import queue
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from support.secure_broker import MAKE_PASSWD, SHIPPED_CONFIG, SecureMosquittoServer, secure_config

from streams import topics
from streams.messages import DeviceAction, DeviceCommand

pytestmark = pytest.mark.mosquitto

TIMEOUT_S = 10.0
NOT_AUTHORIZED = 0x87
SUCCESS = 0x00


@pytest.fixture(scope="module")
def broker(secure_broker: SecureMosquittoServer) -> SecureMosquittoServer:
    return secure_broker


@pytest.fixture
def feeder() -> str:
    """A feeder name of its own, so that tests sharing the broker never see each other's messages."""
    return f"sec-{uuid.uuid4().hex[:8]}"


@dataclass
class Received:
    topic: str
    payload: bytes


class Client:
    """A paho MQTT 5 client whose callbacks only enqueue; the test thread waits on the queues."""

    def __init__(self, broker: SecureMosquittoServer, user: str | None, password: str | None = None) -> None:
        self.broker = broker
        self.paho = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                client_id=f"{user or 'anonymous'}-{uuid.uuid4()}", protocol=mqtt.MQTTv5)
        if user is not None:
            self.paho.username_pw_set(user, broker.passwords.get(user) if password is None else password)
        self.connacks: queue.Queue[ReasonCode] = queue.Queue()
        self.subacks: queue.Queue[tuple[int, list[ReasonCode]]] = queue.Queue()
        self.pubacks: dict[int, ReasonCode] = {}
        self.messages: queue.Queue[Received] = queue.Queue()
        self.paho.on_connect = lambda _c, _u, _f, reason, _p: self.connacks.put(reason)
        self.paho.on_subscribe = lambda _c, _u, mid, reasons, _p: self.subacks.put((mid, reasons))
        self.paho.on_publish = lambda _c, _u, mid, reason, _p: self.pubacks.__setitem__(mid, reason)
        self.paho.on_message = lambda _c, _u, m: self.messages.put(Received(m.topic, bytes(m.payload)))

    def connect(self) -> ReasonCode:
        """Connect and return the CONNACK reason code (success or the broker's refusal)."""
        self.paho.connect(self.broker.host, self.broker.port)
        self.paho.loop_start()
        reason = self.connacks.get(timeout=TIMEOUT_S)
        if reason.is_failure:
            self.close()  # or paho would keep reconnecting
        return reason

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()

    def subscribe(self, topic: str) -> ReasonCode:
        """Subscribe with QoS 1 and return the SUBACK reason code."""
        _, mid = self.paho.subscribe(topic, qos=1)
        acked_mid, reasons = self.subacks.get(timeout=TIMEOUT_S)
        assert acked_mid == mid
        return reasons[0]

    def publish(self, topic: str, payload: bytes | str = b"{}") -> int:
        """Publish with QoS 1, wait for the PUBACK and return its reason code."""
        info = self.paho.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=TIMEOUT_S)
        return self.pubacks[info.mid].value

    def next_message(self) -> Received:
        return self.messages.get(timeout=TIMEOUT_S)

    def nothing_else(self) -> list[Received]:
        """Every message received and not yet taken (it should be none)."""
        left = []
        while not self.messages.empty():
            left.append(self.messages.get_nowait())
        return left


Connect = Callable[[str], Client]


@pytest.fixture
def connect(broker: SecureMosquittoServer) -> Iterator[Connect]:
    """``connect(user)``: a connected client of ``user`` with its password; closed after the test."""
    clients: list[Client] = []

    def connected(user: str) -> Client:
        client = Client(broker, user)
        reason = client.connect()
        assert not reason.is_failure, f"{user} could not connect: {reason}"
        clients.append(client)
        return client

    yield connected
    for client in clients:
        client.close()


def _command(device_id: str) -> str:
    issued = datetime(2024, 1, 15, 17, 0, tzinfo=UTC)
    return DeviceCommand(device_id=device_id, seq=1, issued_utc=issued, expires_utc=issued + timedelta(minutes=5),
                         action=DeviceAction.SET_PHASE, phase="B", source="test").model_dump_json()


# --- the config under test is the shipped one -----------------------------------------------------------------
def test_the_test_broker_changes_only_listener_paths_persistence_and_logging(tmp_path: Path) -> None:
    shipped = SHIPPED_CONFIG.read_text()
    local = secure_config(shipped, port=1234, host="127.0.0.1", workdir=tmp_path, password_file=tmp_path / "pw",
                          log_path=tmp_path / "log")
    relocated = ("listener", "password_file", "acl_file", "persistence_location", "log_dest", "user")
    kept = [line for line in shipped.splitlines() if line.split()[:1] and line.split()[0] not in relocated]
    assert [line for line in local.splitlines() if line.split()[:1] and line.split()[0] not in relocated] == kept
    for line in ("allow_anonymous false", "set_tcp_nodelay true", "persistence true", "max_queued_messages 100000",
                 "per_listener_settings false"):
        assert line in kept, f"{SHIPPED_CONFIG} lost {line!r}"
    assert "#listener 8883" in kept, "the TLS listener should be shipped commented out"


def test_a_shipped_config_without_a_password_file_is_refused(tmp_path: Path) -> None:
    shipped = "\n".join(line for line in SHIPPED_CONFIG.read_text().splitlines()
                        if not line.startswith("password_file"))
    with pytest.raises(Exception, match=r"lacks the security line\(s\) \['password_file'\]"):
        secure_config(shipped, port=1234, host="127.0.0.1", workdir=tmp_path, password_file=tmp_path / "pw",
                      log_path=tmp_path / "log")


# --- authentication -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("user", ["twin", "controller", "recorder", "dashboard", "psd-1", "psd-2"])
def test_every_user_connects_with_its_password(broker: SecureMosquittoServer, user: str) -> None:
    client = Client(broker, user)
    assert client.connect().value == SUCCESS
    client.close()


def test_an_anonymous_client_is_refused(broker: SecureMosquittoServer) -> None:
    reason = Client(broker, None).connect()
    assert reason.is_failure and reason.value == NOT_AUTHORIZED, reason


@pytest.mark.parametrize(("user", "password"), [("twin", "not-the-password"), ("psd-1", ""), ("mallory", "x")])
def test_a_wrong_password_or_an_unknown_user_is_refused(broker: SecureMosquittoServer, user: str,
                                                        password: str) -> None:
    reason = Client(broker, user, password).connect()
    assert reason.is_failure and reason.value == NOT_AUTHORIZED, reason


# --- devices --------------------------------------------------------------------------------------------------
def test_a_device_cannot_publish_another_devices_state(connect: Connect, feeder: str) -> None:
    twin, psd1 = connect("twin"), connect("psd-1")
    assert twin.subscribe(topics.device_states(feeder)).value == 1
    assert psd1.publish(topics.device_state(feeder, "psd-2")) == NOT_AUTHORIZED
    assert psd1.publish(topics.device_ack(feeder, "psd-2")) == NOT_AUTHORIZED
    assert psd1.publish(topics.device_state(feeder, "psd-1"), b"sentinel") == SUCCESS
    assert twin.next_message() == Received(topics.device_state(feeder, "psd-1"), b"sentinel")
    assert twin.nothing_else() == []


def test_the_broker_logs_every_refusal(broker: SecureMosquittoServer, connect: Connect, feeder: str) -> None:
    psd1 = connect("psd-1")
    topic = topics.device_state(feeder, "psd-2")
    assert psd1.publish(topic) == NOT_AUTHORIZED
    assert Client(broker, "mallory", "x").connect().value == NOT_AUTHORIZED
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        log = broker.log_tail(400)
        if f"'{topic}'" in log and "not authorised" in log:
            break
        time.sleep(0.05)
    denied = [line for line in log.splitlines() if "Denied PUBLISH" in line and f"'{topic}'" in line]
    assert denied, f"no 'Denied PUBLISH' line for {topic} in the broker log:\n{log[-2000:]}"
    assert any("not authorised" in line for line in log.splitlines()), "the refused login is not in the log"


def test_a_device_cannot_read_another_devices_commands(connect: Connect, feeder: str) -> None:
    twin, psd1 = connect("twin"), connect("psd-1")
    psd1.subscribe(topics.device_cmd(feeder, "psd-2"))  # mosquitto 2.0 grants it and filters on delivery
    psd1.subscribe(topics.device_cmd(feeder, "psd-1"))
    assert twin.publish(topics.device_cmd(feeder, "psd-2"), _command("psd-2")) == SUCCESS
    assert twin.publish(topics.device_cmd(feeder, "psd-1"), _command("psd-1")) == SUCCESS
    assert psd1.next_message() == Received(topics.device_cmd(feeder, "psd-1"), _command("psd-1").encode())
    assert psd1.nothing_else() == []


def test_a_device_cannot_read_with_a_wildcard_either(connect: Connect, feeder: str) -> None:
    twin, psd1 = connect("twin"), connect("psd-1")
    psd1.subscribe(f"{topics.ROOT}/#")
    for topic in (topics.device_cmd(feeder, "psd-2"), topics.grid_state(feeder), topics.meter_frame(feeder),
                  topics.device_state(feeder, "psd-2"), topics.controller_plan(feeder)):
        assert twin.publish(topic) == SUCCESS
    assert twin.publish(topics.device_cmd(feeder, "psd-1"), b"sentinel") == SUCCESS
    assert psd1.next_message() == Received(topics.device_cmd(feeder, "psd-1"), b"sentinel")
    assert psd1.nothing_else() == []


def test_a_device_gets_its_commands_and_heartbeats_and_the_twin_gets_its_ack_and_state(
    connect: Connect, feeder: str
) -> None:
    twin, psd1 = connect("twin"), connect("psd-1")
    psd1.subscribe(topics.device_cmd(feeder, "psd-1"))
    psd1.subscribe(topics.controller_heartbeat(feeder))
    twin.subscribe(topics.device_acks(feeder))
    twin.subscribe(topics.device_states(feeder))
    assert twin.publish(topics.device_cmd(feeder, "psd-1"), _command("psd-1")) == SUCCESS
    assert psd1.next_message() == Received(topics.device_cmd(feeder, "psd-1"), _command("psd-1").encode())
    assert twin.publish(topics.controller_heartbeat(feeder), b"beat") == SUCCESS
    assert psd1.next_message() == Received(topics.controller_heartbeat(feeder), b"beat")
    assert psd1.publish(topics.device_ack(feeder, "psd-1"), b"ack") == SUCCESS
    assert psd1.publish(topics.device_state(feeder, "psd-1"), b"state") == SUCCESS
    assert twin.next_message() == Received(topics.device_ack(feeder, "psd-1"), b"ack")
    assert twin.next_message() == Received(topics.device_state(feeder, "psd-1"), b"state")


def test_a_device_cannot_command_itself_or_publish_grid_data(connect: Connect, feeder: str) -> None:
    psd1 = connect("psd-1")
    for topic in (topics.device_cmd(feeder, "psd-1"), topics.grid_state(feeder), topics.meter_frame(feeder),
                  topics.controller_heartbeat(feeder), topics.twin_status(feeder)):
        assert psd1.publish(topic) == NOT_AUTHORIZED, topic


# --- controller, recorder, dashboard --------------------------------------------------------------------------
def test_the_controller_commands_devices_but_cannot_publish_grid_state(connect: Connect, feeder: str) -> None:
    twin, controller, psd1 = connect("twin"), connect("controller"), connect("psd-1")
    psd1.subscribe(topics.device_cmd(feeder, "psd-1"))
    twin.subscribe(f"{topics.ROOT}/{feeder}/#")
    assert controller.publish(topics.device_cmd(feeder, "psd-1"), _command("psd-1")) == SUCCESS
    assert psd1.next_message() == Received(topics.device_cmd(feeder, "psd-1"), _command("psd-1").encode())
    assert twin.next_message().topic == topics.device_cmd(feeder, "psd-1")
    for forbidden in (topics.grid_state(feeder), topics.meter_frame(feeder), topics.device_state(feeder, "psd-1"),
                      topics.device_ack(feeder, "psd-1"), topics.twin_status(feeder)):
        assert controller.publish(forbidden) == NOT_AUTHORIZED, forbidden
    assert controller.publish(topics.controller_plan(feeder), b"plan") == SUCCESS
    assert controller.publish(topics.controller_heartbeat(feeder), b"beat") == SUCCESS
    assert twin.next_message() == Received(topics.controller_plan(feeder), b"plan")
    assert twin.next_message() == Received(topics.controller_heartbeat(feeder), b"beat")
    assert twin.nothing_else() == []


def test_the_controller_reads_the_network_and_devices(connect: Connect, feeder: str) -> None:
    twin, controller = connect("twin"), connect("controller")
    readable = [topics.meter_frame(feeder), topics.meter(feeder, "LOAD1"), topics.grid_state(feeder),
                topics.twin_clock(feeder), topics.twin_status(feeder), topics.device_state(feeder, "psd-1"),
                topics.device_ack(feeder, "psd-1")]
    controller.subscribe(f"{topics.ROOT}/{feeder}/#")
    for topic in readable:
        assert twin.publish(topic) == SUCCESS
    assert [controller.next_message().topic for _ in readable] == readable


@pytest.mark.parametrize("user", ["recorder", "dashboard"])
def test_recorder_and_dashboard_read_everything_and_publish_nothing(connect: Connect, feeder: str,
                                                                    user: str) -> None:
    twin, reader = connect("twin"), connect(user)
    reader.subscribe(f"{topics.ROOT}/{feeder}/#")
    for topic in (topics.grid_state(feeder), topics.device_cmd(feeder, "psd-1"), topics.meter_frame(feeder),
                  topics.controller_plan(feeder), topics.twin_status(feeder), topics.deadletter(feeder),
                  topics.device_state(feeder, "psd-1")):
        assert reader.publish(topic) == NOT_AUTHORIZED, topic
    assert twin.publish(topics.twin_status(feeder), b"status") == SUCCESS
    assert reader.next_message() == Received(topics.twin_status(feeder), b"status")
    assert reader.nothing_else() == []


def test_the_dashboard_reads_the_broker_version_for_the_compose_healthcheck(connect: Connect) -> None:
    dashboard, recorder = connect("dashboard"), connect("recorder")
    dashboard.subscribe("$SYS/broker/version")
    assert dashboard.next_message().payload.startswith(b"mosquitto version 2.")
    recorder.subscribe("$SYS/broker/version")
    recorder.subscribe(f"{topics.ROOT}/sentinel/twin/status")
    connect("twin").publish(f"{topics.ROOT}/sentinel/twin/status", b"sentinel")
    assert recorder.next_message().topic == f"{topics.ROOT}/sentinel/twin/status"


# --- the password script --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "error"), [
    (["bad name:x"], "user name 'bad name' must be letters, digits"),
    (["psd+1:x"], "user name 'psd+1' must be letters, digits"),
    (["psd-1:x", "psd-1:y"], "user 'psd-1' is given twice"),
    (["psd-1:"], "the password of user 'psd-1' is empty"),
    (["psd-1"], "'psd-1' is not USER:PASSWORD"),
    ([], "usage: make-passwd.sh"),
])
def test_make_passwd_refuses_bad_users_and_keeps_the_old_file(tmp_path: Path, args: list[str], error: str) -> None:
    target = tmp_path / "passwd"
    target.write_text("old\n")
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([str(MAKE_PASSWD), "-f", str(target), *args], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2
    assert error in done.stderr
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["passwd"], "a temporary file was left behind"


def test_make_passwd_writes_hashed_passwords_readable_by_its_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "passwd"
    env = {"PATH": "/usr/bin:/bin", "MQTT_TWIN_PASSWORD": "tw1n", "MQTT_DEVICE_PASSWORDS": "psd-1:a:b psd-2:c"}
    subprocess.run([str(MAKE_PASSWD), "-f", str(target), "controller:d"], env=env, check=True, capture_output=True)
    lines = target.read_text().splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["twin", "psd-1", "psd-2", "controller"]
    assert all(line.split(":", 1)[1].startswith("$7$") for line in lines), "passwords must be hashed (PBKDF2)"
    assert "tw1n" not in target.read_text()
    assert target.stat().st_mode & 0o077 == 0
