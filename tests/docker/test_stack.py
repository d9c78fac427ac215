"""The docker/ stack is consistent with itself, with the repository and with what the recorder writes.

No Docker engine is needed: the files are parsed and cross-checked.
```
compose.yaml ──services, healthchecks, depends_on, mounts, ports, secrets──► files in docker/, .env.example
Dockerfile ────FROM, COPY (paths exist), USER (not root), ENTRYPOINT phasetwin
grafana/provisioning ──datasource uid, InfluxQL, env──► dashboards/phasetwin.json
phasetwin.json ──every InfluxQL measurement/field/tag──► streams/influx_schema.MEASUREMENTS
(tests/docker/test_dashboard_queries.py runs every panel query against a real InfluxDB 1.x)
```
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.influx.schema import BY_NAME, COMMON_TAGS
from streams.influx.settings import InfluxApi, influx_settings_from_url
from streams.mqtt.bus import MqttSettings

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "phasetwin.json"
DATASOURCE = DOCKER / "grafana" / "provisioning" / "datasources" / "influxdb.yaml"
PROVIDER = DOCKER / "grafana" / "provisioning" / "dashboards" / "phasetwin.yaml"
MOSQUITTO_CONF = DOCKER / "mosquitto" / "mosquitto.conf"

# What the operator must see (the list), as (measurement, field) of streams/influx/schema.py.
REQUIRED_SERIES = {
    ("transformer", "p_kw"),
    ("unbalance", "p_unb_kw"),
    ("network", "p_unb_kw"),
    ("voltage_band", "vm_min_pu"),
    ("voltage_band", "vm_max_pu"),
    ("network", "i_n_max_a"),
    ("device", "phase_index"),
    ("device", "operations_total"),
    ("device", "e_kwh"),
    ("controller", "solve_s"),
    ("controller", "fallbacks"),
    ("twin", "lateness_s"),
}
_FROM = re.compile(r"\bFROM\s+(.*?)(?:\s+WHERE\b|\s+GROUP\b|$)", re.S)
_QUOTED = re.compile(r'"([^"]*)"')
_FIELD = re.compile(r'\b(?:mean|min|max|last|count|sum)\("([^"]*)"\)')
_COLUMN = re.compile(r'"([A-Za-z_][A-Za-z0-9_]*)"\s*=\s*\'')  # a tag compared in WHERE
_GROUP = re.compile(r"GROUP BY (.*?)(?: fill\(|$)")
_INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def _load_yaml(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_yaml(DOCKER / "compose.yaml")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, Flux query) of every panel target."""
    return [(panel["title"], target["query"]) for panel in dashboard["panels"] for target in panel["targets"]]


def _one_shot(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services others wait for with ``service_completed_successfully``: jobs, not daemons."""
    return {name for service in services.values() for name, dep in (service.get("depends_on") or {}).items()
            if dep.get("condition") == "service_completed_successfully"}


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, container path) of every short-syntax volume of a service."""
    return [(volume.split(":")[0], volume.split(":")[1]) for volume in service.get("volumes", [])]


def _measurements(query: str) -> list[str]:
    return [m for clause in _FROM.findall(query) for m in _QUOTED.findall(clause)]


def schema_problems(query: str) -> list[str]:
    """What in one InfluxQL panel query the recorder does not write: unknown measurement, field or tag."""
    measurements = _measurements(query)
    if len(measurements) != 1:
        return [f"a panel query must read exactly one measurement, found {measurements}"]
    (name,) = measurements
    if name not in BY_NAME:
        return [f"measurement {name!r} is not in streams/influx/schema.py MEASUREMENTS"]
    measurement = BY_NAME[name]
    fields = _FIELD.findall(query)
    problems = [] if fields else [f"query on {name!r} names no field"]
    problems += [f"field {f!r} is not written to measurement {name!r} (fields: {sorted(measurement.fields)})"
                 for f in fields if f not in measurement.fields]
    tags = {*COMMON_TAGS, *measurement.tags}
    grouped = [t.strip().strip('"') for g in _GROUP.findall(query) for t in g.split(",")
               if not t.strip().startswith("time(")]
    problems += [f"tag {c!r} is not a tag of {name!r} ({sorted(tags)})"
                 for c in sorted({*_COLUMN.findall(query), *grouped}) if c not in tags]
    return problems


# --- compose.yaml ---------------------------------------------------------------------------------------------
def test_compose_has_the_four_services_and_the_password_step(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"mosquitto-passwd", "mosquitto", "influxdb", "grafana", "phasetwin"}
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert services["mosquitto-passwd"]["image"] == "eclipse-mosquitto:2"
    assert services["influxdb"]["image"] == "influxdb:2.7"
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    build = services["phasetwin"]["build"]
    assert (build["context"], build["dockerfile"]) == ("..", "docker/Dockerfile")
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    jobs = _one_shot(services)
    assert jobs == {"mosquitto-passwd"}
    for name, service in services.items():
        if name in jobs:
            assert service.get("restart") == "no", f"{name} is a one-shot job and must not restart"
            continue
        check = service.get("healthcheck")
        assert check and check.get("test"), f"service {name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test must be CMD or CMD-SHELL"
        assert check.get("interval") and check.get("retries"), f"{name}: healthcheck needs interval and retries"


def test_the_python_healthcheck_of_the_twin_compiles(services: dict[str, dict[str, Any]]) -> None:
    test = services["phasetwin"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    compile(test[3], "phasetwin healthcheck", "exec")
    assert "twin/status" in test[3]


def test_services_start_after_what_they_need_is_healthy(services: dict[str, dict[str, Any]]) -> None:
    expected = {
        "mosquitto": {"mosquitto-passwd": "service_completed_successfully"},
        "grafana": {"influxdb": "service_healthy"},
        "phasetwin": {"mosquitto": "service_healthy", "influxdb": "service_healthy"},
    }
    for name, service in services.items():
        depends = {dep: spec["condition"] for dep, spec in (service.get("depends_on") or {}).items()}
        assert depends == expected.get(name, {}), name
        for dep, condition in depends.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"


def test_bind_mounts_point_to_files_in_the_repository_and_named_volumes_are_declared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        for source, target in _mounts(service):
            assert target.startswith("/"), f"{name}: container path {target!r} must be absolute"
            if source.startswith((".", "/")):
                path = (DOCKER / source).resolve()
                assert path.exists(), f"{name} mounts {source} ({path}), which does not exist"
                assert path.is_relative_to(REPO), f"{name} mounts {path}, outside the repository"
            else:
                assert source in declared, f"{name} uses volume {source!r}, not declared under volumes:"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"


def test_ports_are_published_on_the_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    published = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            host_ip, host_port, container_port = str(port).split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond the loopback"
            published[name] = (int(host_port), int(container_port))
    assert published == {"mosquitto": (1883, 1883), "influxdb": (8086, 8086), "grafana": (3000, 3000)}


def test_secrets_come_from_docker_env_and_are_never_committed(services: dict[str, dict[str, Any]]) -> None:
    text = (DOCKER / "compose.yaml").read_text(encoding="utf-8")
    example = (DOCKER / ".env.example").read_text(encoding="utf-8")
    listed = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line and not line.startswith("#")}
    referenced = set(_INTERPOLATION.findall(text))
    assert referenced, "compose.yaml takes no value from the environment"
    assert referenced <= listed, f"set in compose.yaml but missing from docker/.env.example: {referenced - listed}"
    assert all(line.endswith("=") for line in example.splitlines() if "=" in line and not line.startswith("#")), \
        "docker/.env.example must not hold real values"
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "TOKEN")):
                assert _INTERPOLATION.fullmatch(str(value)), f"{name}: {key} must come from docker/.env, not {value!r}"
    ignored = (DOCKER / ".gitignore").read_text(encoding="utf-8").split()
    assert {".env", "mosquitto/passwd"} <= set(ignored)


def test_mosquitto_mounts_what_its_config_names(services: dict[str, dict[str, Any]]) -> None:
    conf = {line.split()[0]: line.split()[1] for line in MOSQUITTO_CONF.read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    mounts = dict((target, source) for source, target in _mounts(services["mosquitto"]))
    assert mounts["/mosquitto/config/mosquitto.conf"] == "./mosquitto/mosquitto.conf"
    assert mounts[conf["acl_file"]] == "./mosquitto/acl"
    password_dir = conf["password_file"].rsplit("/", 1)[0]
    assert mounts[password_dir] == "mosquitto-passwd"
    assert conf["persistence_location"].rstrip("/") in mounts
    job = services["mosquitto-passwd"]
    job_mounts = {target: source for source, target in _mounts(job)}
    assert job_mounts[password_dir] == "mosquitto-passwd", "the password step must write where mosquitto reads"
    script = next(target for target, source in job_mounts.items() if source == "./mosquitto/make-passwd.sh")
    command = " ".join(job["command"])
    assert f"{script} -f {conf['password_file']}" in command


def test_influxdb_is_set_up_with_the_org_bucket_and_token_the_twin_uses(services: dict[str, dict[str, Any]]) -> None:
    env = services["influxdb"]["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert (env["DOCKER_INFLUXDB_INIT_ORG"], env["DOCKER_INFLUXDB_INIT_BUCKET"]) == ("phasetwin", "phasetwin")
    token = env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    twin = services["phasetwin"]
    url = twin["environment"]["PHASETWIN_INFLUX_URL"]
    assert url.startswith("http://influxdb:8086?")
    assert "org=phasetwin" in url and "bucket=phasetwin" in url
    assert f"token={token}" in url
    command = twin["command"]
    assert command[:3] == ["replay", "--speed", "60"]
    assert "--influx" not in command and "--bus" not in command, "credentials belong in the environment only"
    bus = twin["environment"]["PHASETWIN_BUS_URL"]
    assert bus.startswith("mqtt://twin:") and bus.endswith("@mosquitto:1883")


def test_the_cli_reads_both_urls_from_the_environment_variables_compose_sets() -> None:
    from typer.main import get_command

    from phasetwin.cli.main import app

    replay = get_command(app).commands["replay"]  # type: ignore[attr-defined]
    envvars = {p.name: p.envvar for p in replay.params}
    assert envvars["bus"] == "PHASETWIN_BUS_URL" and envvars["influx"] == "PHASETWIN_INFLUX_URL"


def test_the_twin_urls_are_accepted_by_the_parsers_of_the_cli(services: dict[str, dict[str, Any]]) -> None:
    env = services["phasetwin"]["environment"]
    influx = influx_settings_from_url(_INTERPOLATION.sub("s3cret-token", env["PHASETWIN_INFLUX_URL"]))
    assert (influx.url, influx.api, influx.org, influx.bucket) == ("http://influxdb:8086", InfluxApi.V2, "phasetwin",
                                                                   "phasetwin")
    assert influx.token is not None and influx.token.get_secret_value() == "s3cret-token"
    bus = MqttSettings.from_url(_INTERPOLATION.sub("s3cret", env["PHASETWIN_BUS_URL"]))
    assert (bus.host, bus.port, bus.username, bus.password, bus.tls) == ("mosquitto", 1883, "twin", "s3cret", False)


# --- Dockerfile -----------------------------------------------------------------------------------------------
def _instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_installs_the_packages_and_runs_phasetwin_as_a_user() -> None:
    steps = _instructions()
    kinds = [kind for kind, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [arg for kind, arg in steps if kind == "USER"]
    assert users and users[-1] not in ("root", "0"), "the container must not run as root"
    last_user = max(i for i, kind in enumerate(kinds) if kind == "USER")
    assert last_user > max(i for i, kind in enumerate(kinds) if kind == "RUN")
    assert last_user < kinds.index("ENTRYPOINT")
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["phasetwin"]
    cmd = json.loads(dict(steps)["CMD"])
    assert cmd[0] == "replay" and "--bus" not in cmd and "--influx" not in cmd, "URLs come from the environment"


def test_dockerfile_copies_paths_that_exist_and_every_package_of_pyproject() -> None:
    copied = []
    for kind, arg in _instructions():
        if kind == "COPY":
            *sources, _ = shlex.split(arg)
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the build context {REPO}"
                copied.append(source.rstrip("/"))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", pyproject["project"]["readme"]} <= set(copied)


# --- Grafana provisioning -------------------------------------------------------------------------------------
def test_datasource_is_influxdb_with_influxql_and_secrets_from_the_environment(
    services: dict[str, dict[str, Any]], dashboard: dict[str, Any]
) -> None:
    provisioned = _load_yaml(DATASOURCE)
    assert provisioned["apiVersion"] == 1
    (source,) = provisioned["datasources"]
    assert (source["type"], source["url"], source["access"]) == ("influxdb", "http://influxdb:8086", "proxy")
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["secureJsonData"]["httpHeaderValue1"].startswith("Token ")  # InfluxDB 2: DBRP + token
    env = services["grafana"]["environment"]
    for value in (source["database"], source["jsonData"]["dbName"], source["secureJsonData"]["httpHeaderValue1"]):
        (variable,) = _INTERPOLATION.findall(value)
        assert variable in env, f"{DATASOURCE.name} reads ${{{variable}}}, which compose does not give grafana"
    assert env["INFLUX_BUCKET"] == "phasetwin"
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"]}
    uids |= {t["datasource"]["uid"] for panel in dashboard["panels"] for t in panel["targets"]}
    uids |= {v["datasource"]["uid"] for v in dashboard["templating"]["list"]}
    assert uids == {source["uid"]}


def test_dashboard_provider_reads_the_folder_compose_mounts(services: dict[str, dict[str, Any]]) -> None:
    provider = _load_yaml(PROVIDER)
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    mounts = {source: target for source, target in _mounts(services["grafana"])}
    assert mounts["./grafana/dashboards"] == entry["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{entry['options']['path']}/{DASHBOARD.name}"


# --- the dashboard --------------------------------------------------------------------------------------------
def test_dashboard_is_valid_with_unique_panel_ids_and_a_target_in_every_panel(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no target"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"panel {panel['title']!r} repeats a refId"
        assert all(t["query"].strip() for t in panel["targets"]), f"panel {panel['title']!r} has an empty query"
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, f"{panel['title']!r} is off the grid"
    cells = [{(panel["gridPos"]["x"] + i, panel["gridPos"]["y"] + j) for i in range(panel["gridPos"]["w"])
              for j in range(panel["gridPos"]["h"])} for panel in dashboard["panels"]]
    for a in range(len(cells)):
        for b in range(a + 1, len(cells)):
            assert not cells[a] & cells[b], f"panels {ids[a]} and {ids[b]} overlap"


def test_dashboard_has_feeder_and_run_variables_from_the_tags(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"feeder", "run"}
    for name, variable in variables.items():
        assert variable["type"] == "query"
        assert f'SHOW TAG VALUES FROM "network" WITH KEY = "{name}"' in variable["query"]
        assert name in COMMON_TAGS
    assert "WHERE \"feeder\" = '$feeder'" in variables["run"]["query"]


def test_every_panel_query_is_influxql_over_the_selected_run(dashboard: dict[str, Any]) -> None:
    for title, query in _queries(dashboard):
        assert query.startswith("SELECT "), title
        # the selected run, or its no-control reference written beside it (drawn dashed)
        assert any(f"\"feeder\" = '$feeder' AND \"run\" = '{run}' AND $timeFilter" in query
                   for run in ("$run", "${run}-no-control")), title
        assert "from(bucket" not in query and "|>" not in query, title


def test_every_measurement_field_and_tag_in_the_dashboard_is_one_the_recorder_writes(
    dashboard: dict[str, Any]
) -> None:
    problems = [f"{title}: {problem}" for title, query in _queries(dashboard) for problem in schema_problems(query)]
    assert not problems, "\n".join(problems)


def test_the_dashboard_shows_everything_the_operator_needs(dashboard: dict[str, Any]) -> None:
    shown = {(m, f) for _, query in _queries(dashboard) for m in _measurements(query)
             for f in _FIELD.findall(query)}
    assert shown >= REQUIRED_SERIES, f"not on the dashboard: {sorted(REQUIRED_SERIES - shown)}"


@pytest.mark.parametrize(("query", "problem"), [
    ('SELECT last("soc_pct") FROM "device"', "field 'soc_pct' is not written to measurement 'device'"),
    ('SELECT mean("e_kwh") FROM "battery" WHERE $timeFilter', "measurement 'battery' is not in"),
    ('SELECT mean("p_kw") FROM "transformer" WHERE "device" = \'psd-1\'', "tag 'device' is not a tag of 'transformer'"),
    ('SELECT mean("p_kw") FROM "transformer" WHERE $timeFilter GROUP BY time(1m), "line" fill(none)',
     "tag 'line' is not a tag of 'transformer'"),
    ('SELECT mean("p_kw") FROM "twin", "network"', "exactly one measurement"),
    ('SELECT * FROM "twin"', "names no field"),
])
def test_the_schema_check_catches_what_the_recorder_does_not_write(query: str, problem: str) -> None:
    problems = schema_problems(query)
    assert any(problem in p for p in problems), problems
    assert schema_problems('SELECT mean("e_kwh") FROM "device" WHERE "kind" = \'pess\' AND $timeFilter '
                           'GROUP BY time($__interval), "device" fill(none)') == []


def test_the_committed_dashboard_is_what_make_dashboard_writes(dashboard: dict[str, Any]) -> None:
    spec = importlib.util.spec_from_file_location("make_dashboard", DOCKER / "grafana" / "make_dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.dashboard() == dashboard, "run python docker/grafana/make_dashboard.py"
