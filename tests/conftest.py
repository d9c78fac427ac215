"""Fixtures for the whole test suite.

Real servers (implemented in ``tests/support/servers.py``), one per test session, each on free loopback ports in a
temporary folder, stopped at the end of the session:

- ``mosquitto`` -> ``MosquittoServer``: ``host``, ``port``, ``url`` (``mqtt://127.0.0.1:PORT``), ``stop()``,
  ``kill()``, ``start()``, ``restart()``, ``running``, ``log_tail()``. Anonymous, persistent (QoS 1 queues of
  persistent sessions survive ``stop()``/``start()``).
- ``influxdb`` -> ``InfluxDBServer`` (InfluxDB 1.x): the same, with ``url`` ``http://127.0.0.1:PORT`` and
  ``query(q, db=None, *, epoch=None)`` returning the parsed JSON of ``POST /query``.
- ``victoriametrics`` -> ``VictoriaMetricsServer``: the same, with ``url`` ``http://127.0.0.1:PORT`` (InfluxDB
  line protocol on ``/write`` and ``/api/v2/write``), ``force_flush()``, ``export(match)`` and ``samples(match)``
  returning the raw stored samples (duplicates kept).

The servers are shared by every test of the session, so a test uses its own topics, client ids and
databases (a uuid in the name). A test may stop or kill a server; it runs again before the next test starts.
A test that uses one of these fixtures gets the marker of the same name, so ``-m "not influxdb"`` works.
When a server binary is missing the fixture fails (never skips) and says to run ``scripts/test``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
from support.servers import InfluxDBServer, MosquittoServer, ServerError, ServerProcess, VictoriaMetricsServer

if TYPE_CHECKING:
    from collections.abc import Iterator

# Fixtures used by tests in more than one folder live in tests/support and are loaded for every test.
pytest_plugins = ["support.ieee_fixtures", "support.two_feeder_fixtures", "support.device_commands",
                  "support.report_runs", "support.secure_broker"]

_Server = TypeVar("_Server", bound=ServerProcess)
_RUNNING_SERVERS = pytest.StashKey[list[ServerProcess]]()
_SERVER_FIXTURES = ("mosquitto", "influxdb", "victoriametrics")
_TESTS = Path(__file__).resolve().parent
_REALTIME_FOLDERS = ("hostile", "docs", "docker", "phasetwin/hil", "phasetwin/view", "streams/mqtt", "streams/influx")
_REALTIME_FILES = ("twin/test_clock.py",)
_REALTIME_BENCHMARKS = ("mqtt", "hostile_flood", "broker_outage", "view_live")
"""Quick modes of benchmarks that pace a replay by the wall clock (tests/benchmarks/test_quick_modes.py)."""


def _is_realtime(item: pytest.Item) -> bool:
    """Paced by the wall clock or timed against it, or served by a real server or browser: CI runs these one at a
    time after the rest, which runs on every core (.ci/run), so that no other test's CPU delays their ticks."""
    fixtures = getattr(item, "fixturenames", ())
    if any(name in fixtures for name in (*_SERVER_FIXTURES, "secure_broker", "chrome")) or item.get_closest_marker(
            "browser"):
        return True
    where = item.path.relative_to(_TESTS).as_posix() if item.path.is_relative_to(_TESTS) else ""
    if where.startswith(tuple(f"{folder}/" for folder in _REALTIME_FOLDERS)) or where in _REALTIME_FILES:
        return True
    script = getattr(getattr(item, "callspec", None), "params", {}).get("script")
    return where == "benchmarks/test_quick_modes.py" and getattr(script, "stem", None) in _REALTIME_BENCHMARKS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in _SERVER_FIXTURES:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(name)
        if _is_realtime(item):
            item.add_marker("realtime")


def _serve(
    server_type: type[_Server], tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[_Server]:
    try:
        server = server_type(workdir=tmp_path_factory.mktemp(server_type.name))
        server.start()
    except ServerError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:  # failed outside the except block, so that the report is the message alone
        pytest.fail(problem, pytrace=False)
    servers = request.config.stash.setdefault(_RUNNING_SERVERS, [])
    servers.append(server)
    try:
        yield server
    finally:
        servers.remove(server)
        server.stop()


@pytest.fixture(scope="session")
def mosquitto(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[MosquittoServer]:
    """A Mosquitto 2 broker on 127.0.0.1, anonymous and persistent, for the whole session."""
    yield from _serve(MosquittoServer, tmp_path_factory, request)


@pytest.fixture(scope="session")
def influxdb(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[InfluxDBServer]:
    """An InfluxDB 1.x server on 127.0.0.1 (HTTP API, no auth), for the whole session."""
    yield from _serve(InfluxDBServer, tmp_path_factory, request)


@pytest.fixture(scope="session")
def victoriametrics(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[VictoriaMetricsServer]:
    """A single-node VictoriaMetrics on 127.0.0.1 (InfluxDB line protocol over HTTP), for the whole session."""
    yield from _serve(VictoriaMetricsServer, tmp_path_factory, request)


@pytest.fixture(autouse=True)
def _session_servers_run_again(request: pytest.FixtureRequest) -> Iterator[None]:
    """Start again any session server that a test stopped, on purpose or by failing half-way."""
    yield
    for server in request.config.stash.get(_RUNNING_SERVERS, []):
        if server.running:
            continue
        try:
            server.start()
        except ServerError as exc:
            problem = f"could not start {server!r} again after this test: {exc}"
        else:
            continue
        pytest.fail(problem, pytrace=False)
