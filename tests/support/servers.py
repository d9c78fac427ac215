"""Real Mosquitto, InfluxDB 1.x and VictoriaMetrics servers for tests, each on free loopback ports in its own folder.

A server is a child process in its own process group, started from a config file (or the command-line flags)
this module writes. ``stop()`` ends it gracefully (every server flushes its data on SIGTERM), ``kill()`` ends
it as a crash would, and ``start()`` runs it again with the same config, ports and data folder. The pytest
fixtures that hold these objects live in ``tests/conftest.py``.

The binaries come from the Debian packages ``mosquitto``, ``influxdb`` and ``victoria-metrics``, which
``scripts/test`` installs; their system services are never used.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "InfluxDBServer",
    "InfluxQueryError",
    "MosquittoServer",
    "ServerError",
    "ServerProcess",
    "VictoriaMetricsServer",
    "find_binary",
    "free_port",
]

HOST = "127.0.0.1"
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0
_LOG_TAIL_LINES = 40
# Debian puts mosquitto in /usr/sbin, which is not on a normal user's PATH.
_EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class ServerError(RuntimeError):
    """A test server is missing, did not start, or did not stop."""


class InfluxQueryError(ServerError):
    """InfluxDB answered a /query request with an error."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str, *, package: str) -> str:
    """Return the path of the server binary ``name``.

    Raises:
        ServerError: the binary is not installed; the message says how to install it.
    """
    search_path = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_BIN_DIRS])
    found = shutil.which(name, path=search_path)
    if found is None:
        raise ServerError(
            f"{name} is not installed (Debian package {package!r}); run the tests with scripts/test, "
            f"which installs it, or: apt-get install --no-install-recommends {package}"
        )
    return found


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class ServerProcess(abc.ABC):
    """One server binary run from a config file in ``workdir``, with its output appended to ``log_path``.

    Ready means: the server wrote ``ready_pattern`` to its log since this start *and* answers on its port.
    The log line tells our process apart from any other one that might hold the same port.
    """

    name = "server"
    ready_pattern = re.compile("(?!)")
    binary_name = ""
    package = ""
    """The binary and the Debian package that has it."""

    def __init__(self, *, workdir: Path, port: int | None = None) -> None:
        self.host = HOST
        self.workdir = workdir
        self.log_path = workdir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.binary = find_binary(self.binary_name, package=self.package)
        self.port = free_port() if port is None else port

    # -- to be provided by each server -----------------------------------------------------------------
    @abc.abstractmethod
    def _argv(self) -> list[str]: ...

    @abc.abstractmethod
    def _is_ready(self) -> bool: ...

    @property
    @abc.abstractmethod
    def url(self) -> str: ...

    # -- life cycle ------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None when it is not running."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout_s: float = _START_TIMEOUT_S) -> None:
        """Start the server (no-op when it runs) and wait until it serves requests.

        Raises:
            ServerError: it exited or was not ready within ``timeout_s``; the message has its log tail.
        """
        if self.running:
            return
        env = {key: value for key, value in os.environ.items() if not key.startswith("INFLUXDB_")}
        with self.log_path.open("ab") as log:
            log.write(f"---- {self.name} starting: {' '.join(self._argv())}\n".encode())
            log.flush()
            log_offset = log.tell()
            self._process = subprocess.Popen(
                self._argv(),
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so teardown can kill all of it
            )
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise ServerError(f"{self.name} exited with code {code} while starting\n{self.log_tail()}")
            if self._logged_ready_since(log_offset) and self._is_ready():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(f"{self.name} was not ready after {timeout_s:g} s\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, *, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """Stop the server gracefully (SIGTERM; it saves its data), SIGKILL after ``timeout_s``.

        A no-op when it is not running.
        """
        self._end(signal.SIGTERM, timeout_s=timeout_s)

    def kill(self) -> None:
        """End the server at once (SIGKILL), as a crash would: unsaved state is lost."""
        self._end(signal.SIGKILL, timeout_s=_STOP_TIMEOUT_S)

    def restart(self) -> None:
        """``stop()`` then ``start()``."""
        self.stop()
        self.start()

    def _end(self, sig: signal.Signals, *, timeout_s: float) -> None:
        process = self._process
        if process is None:
            return
        self._kill_group(sig)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._kill_group(signal.SIGKILL)
            process.wait(timeout=timeout_s)
        # Anything the server forked is in its group; make sure none of it outlives the server.
        self._kill_group(signal.SIGKILL)
        self._process = None

    def _kill_group(self, sig: signal.Signals) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, sig)

    def _logged_ready_since(self, offset: int) -> bool:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return self.ready_pattern.search(log.read().decode(errors="replace")) is not None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server's output, headed by the log's path."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"---- last {lines} lines of {self.log_path}:\n{tail}"

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state} in {self.workdir}>"


class MosquittoServer(ServerProcess):
    """A Mosquitto 2 broker on 127.0.0.1: anonymous, persistent (QoS 1/2 queues survive ``stop``/``start``).

    Attributes:
        host: always ``"127.0.0.1"``.
        port: the MQTT listener's port, kept across restarts.
        url: ``mqtt://127.0.0.1:PORT``.
        workdir: holds ``mosquitto.conf``, ``server.log`` and the persistence file ``mosquitto.db``.
    """

    name = "mosquitto"
    ready_pattern = re.compile(r"mosquitto version \S+ running")
    binary_name = package = "mosquitto"

    def __init__(self, *, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir=workdir, port=port)
        self.config_path = workdir / "mosquitto.conf"
        self.config_path.write_text(self._config())

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _config(self) -> str:
        # Run as root, mosquitto drops to the user "mosquitto", which cannot write our folder; naming the
        # current user keeps it as it is (and is ignored when not root).
        user = pwd.getpwuid(os.getuid()).pw_name
        return "\n".join(
            [
                f"user {user}",
                "per_listener_settings false",
                f"listener {self.port} {self.host}",
                "allow_anonymous true",
                "set_tcp_nodelay true",
                "persistence true",
                f"persistence_location {self.workdir}/",
                "persistence_file mosquitto.db",
                # A subscriber that falls behind a fast replay must not lose QoS 1 messages to the default
                # limit of 1000 queued per client.
                "max_queued_messages 100000",
                # Not stdout: mosquitto 2.0.11 block-buffers it when it is not a terminal.
                f"log_dest file {self.log_path}",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "log_timestamp_format %Y-%m-%dT%H:%M:%S",
                "",
            ]
        )

    def _argv(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def _is_ready(self) -> bool:
        return _port_accepts(self.port)


class _HttpServer(ServerProcess):
    """A server whose API is HTTP on ``port``."""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _answers(self, path: str, status: int) -> bool:
        """Whether ``GET path`` answers with ``status`` within a second."""
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=1.0) as response:
                return bool(response.status == status)
        except OSError:
            return False


class InfluxDBServer(_HttpServer):
    """An InfluxDB 1.x server (``influxd``) on 127.0.0.1, HTTP API only, no authentication.

    Attributes:
        host: always ``"127.0.0.1"``.
        port: the HTTP API's port, kept across restarts.
        rpc_port: the backup/restore RPC port (loopback too; tests need not use it).
        url: ``http://127.0.0.1:PORT``.
        workdir: holds ``influxdb.conf``, ``server.log`` and the ``meta``, ``data`` and ``wal`` folders.
    """

    name = binary_name = "influxd"
    package = "influxdb"
    ready_pattern = re.compile(r'msg="Listening on HTTP"')

    def __init__(self, *, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir=workdir, port=port)
        self.rpc_port = free_port()
        self.config_path = workdir / "influxdb.conf"
        self.config_path.write_text(self._config())

    def _config(self) -> str:
        # Keys as influxd 1.6 prints them with `influxd config`; it ignores keys it does not know. Debian's
        # build renamed upstream's `reporting-disabled` to `reporting-enabled`, so both are set. Every service
        # that would open a port of its own is off; the RPC (backup) one cannot be, so it gets a free
        # loopback port.
        return f"""\
reporting-enabled = false
reporting-disabled = true
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = "{self.workdir}/meta"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{self.workdir}/data"
  wal-dir = "{self.workdir}/wal"
  wal-fsync-delay = "0s"
  index-version = "inmem"
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "{self.host}:{self.port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false
  unix-socket-enabled = false

[ifql]
  enabled = false

[logging]
  level = "info"
  suppress-logo = true

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  log-enabled = false
"""

    def _argv(self) -> list[str]:
        return [self.binary, "-config", str(self.config_path)]

    def _is_ready(self) -> bool:
        return self._answers("/ping", 204)

    def query(self, q: str, db: str | None = None, *, epoch: str | None = None) -> dict[str, Any]:
        """Run InfluxQL ``q`` through the HTTP API (``POST /query``) and return the parsed JSON answer.

        ``epoch`` (``"s"``, ``"ms"``, ``"u"``, ``"ns"``…) asks for integer timestamps instead of RFC 3339.

        Raises:
            InfluxQueryError: the server answered with an HTTP error or any statement failed.
        """
        form = {"q": q}
        if db is not None:
            form["db"] = db
        if epoch is not None:
            form["epoch"] = epoch
        request = urllib.request.Request(
            f"{self.url}/query", data=urllib.parse.urlencode(form).encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30.0) as response:
                answer: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as exc:
            with exc:
                body = exc.read().decode(errors="replace")
            raise InfluxQueryError(f"InfluxDB /query answered HTTP {exc.code} to {q!r}: {body}") from exc
        errors = [answer["error"]] if "error" in answer else []
        errors += [result["error"] for result in answer.get("results", []) if "error" in result]
        if errors:
            raise InfluxQueryError(f"InfluxDB /query failed for {q!r}: {'; '.join(errors)}")
        return answer


class VictoriaMetricsServer(_HttpServer):
    """A single-node VictoriaMetrics on 127.0.0.1, which takes InfluxDB line protocol on ``/write`` (v1) and
    ``/api/v2/write`` (v2) of its HTTP port, no authentication.

    It stores a line's field ``f`` of measurement ``m`` as the series ``m_f`` with the tags as labels (a v1
    write adds the label ``db``), numbers as float64 rounded to about 12 significant digits, booleans as 1/0
    and strings as 0. Without ``-dedup.minScrapeInterval`` (not set here) it keeps every sample it is sent,
    also two with the same series and timestamp, so a duplicate write shows in ``samples()``.
    Retention is 100 years, so that replays of past days are kept.

    Attributes:
        host: always ``"127.0.0.1"``.
        port: the HTTP port, kept across restarts.
        url: ``http://127.0.0.1:PORT``.
        workdir: holds ``server.log`` and the ``data`` folder.
    """

    name = binary_name = package = "victoria-metrics"
    ready_pattern = re.compile(r"starting http server at")

    def __init__(self, *, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir=workdir, port=port)
        self.data_path = workdir / "data"

    def _argv(self) -> list[str]:
        return [
            self.binary,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.data_path}",
            "-retentionPeriod=100y",
            "-loggerLevel=INFO",
        ]

    def _is_ready(self) -> bool:
        return self._answers("/health", 200)

    def force_flush(self) -> None:
        """Make everything written so far searchable now (``/internal/force_flush``)."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=30.0) as response:
            response.read()

    def export(self, match: str) -> list[dict[str, Any]]:
        """The raw samples of every series matching the selector ``match`` (``/api/v1/export``), after a flush:
        one ``{"metric": {labels}, "values": [...], "timestamps": [ms...]}`` per series, duplicates kept.

        Raises:
            ServerError: the server answered with an HTTP error.
        """
        self.force_flush()
        request = urllib.request.Request(
            f"{self.url}/api/v1/export", data=urllib.parse.urlencode({"match[]": match}).encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=60.0) as response:
                lines = response.read().decode().splitlines()
        except urllib.error.HTTPError as exc:
            with exc:
                body = exc.read().decode(errors="replace")
            raise ServerError(f"VictoriaMetrics /api/v1/export answered HTTP {exc.code} to {match!r}: {body}") from exc
        return [json.loads(line) for line in lines if line.strip()]

    def samples(self, match: str) -> list[tuple[dict[str, str], int, float]]:
        """``export(match)`` flattened: one ``(labels, timestamp_ms, value)`` per stored sample."""
        return [
            (series["metric"], t, v)
            for series in self.export(match)
            for t, v in zip(series["timestamps"], series["values"], strict=True)
        ]
