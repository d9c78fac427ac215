"""Where and how the InfluxDB recorder writes: ``InfluxSettings``, and the ``--influx URL`` form that builds them.

URL forms accepted by ``influx_settings_from_url`` (every query parameter is optional):

- ``influxdb+v2://[:TOKEN@]HOST:PORT/BUCKET?org=ORG`` — InfluxDB 2.x/3.x (or VictoriaMetrics) through
  influxdb-client's write API on ``/api/v2/write``; ``influxdb+v2+https://`` for TLS.
- ``influxdb+v1://[USER:PASSWORD@]HOST:PORT/DATABASE`` — InfluxDB 1.x, plain ``POST /write?db=…&precision=s``;
  ``influxdb+v1+https://`` for TLS.
- ``http(s)://HOST:PORT[/PREFIX]?api=v1|v2&bucket=…`` — the same with everything in the query; ``api`` defaults
  to ``v2``; ``db`` is accepted for ``bucket``, ``u``/``p`` for ``username``/``password``, as InfluxDB 1.x does.

Any other ``InfluxSettings`` field can be given as a query parameter by its name, e.g.
``influxdb+v1://127.0.0.1:8086/twin?detail=full&batch_points=10000&spool_max_mb=64``. Unknown parameters and
bad values raise ``InfluxSettingsError`` naming the parameter, the value and what is expected.
"""

from __future__ import annotations

import urllib.parse
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from streams.errors import StreamError

__all__ = [
    "Detail",
    "InfluxApi",
    "InfluxError",
    "InfluxSettings",
    "InfluxSettingsError",
    "influx_settings_from_url",
]


class InfluxError(StreamError):
    """The InfluxDB recorder, its spool or an export could not do what was asked."""


class InfluxSettingsError(InfluxError, ValueError):
    """Settings or an ``--influx`` URL are invalid; the message names every bad field, its value and the rule."""


class InfluxApi(StrEnum):
    V1 = "v1"
    """InfluxDB 1.x: ``POST /write?db=&precision=s``, optional basic authentication."""
    V2 = "v2"
    """InfluxDB 2.x/3.x and compatibles: influxdb-client's write API on ``/api/v2/write`` with org, bucket, token."""


class Detail(StrEnum):
    OPERATOR = "operator"
    """Bus voltages only at customer buses and the transformer's LV bus; line currents only of the feeder heads."""
    FULL = "full"
    """Every bus and every line."""


class InfluxSettings(BaseModel):
    """Validated settings of one InfluxDB target. Sizes in MB are 10^6 bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(description="base URL of the server, e.g. http://127.0.0.1:8086 (no /write path)")
    api: InfluxApi = InfluxApi.V2
    bucket: str = Field(min_length=1, description="v2 bucket, or v1 database name")
    org: str = Field(default="", description="v2 organisation (InfluxDB 2.x needs it; compatibles ignore it)")
    token: SecretStr | None = Field(default=None, description="v2 API token")
    username: str | None = Field(default=None, min_length=1, description="v1 user (basic authentication)")
    password: SecretStr | None = Field(default=None, description="v1 password")
    create_database: bool = Field(default=True, description="v1: CREATE DATABASE when the server says it is missing")
    batch_points: int = Field(default=5000, ge=1, le=1_000_000, description="points per POST (at tick boundaries)")
    flush_interval_s: float = Field(default=1.0, gt=0, le=3600, description="longest a point waits for its batch")
    timeout_s: float = Field(default=10.0, gt=0, le=600, description="HTTP connect and read timeout")
    max_retries: int = Field(default=3, ge=0, le=20, description="re-sends of a batch before it goes to the spool")
    backoff_s: float = Field(default=0.2, gt=0, le=60, description="first back-off; doubles per retry")
    backoff_max_s: float = Field(default=2.0, gt=0, le=600,
                                 description="back-off cap; also the probe interval while the server is down")
    spool_dir: Path | None = Field(default=None, description="on-disk spool for batches the server did not take; "
                                   "None = no spool (such batches are dropped and counted)")
    spool_max_mb: float = Field(default=256.0, gt=0, le=1_000_000, description="spool size bound, MB")
    queue_max_messages: int = Field(default=10_000, ge=1, description="bus messages waiting for the writer thread; "
                                    "when full, the publisher waits (back-pressure, nothing is lost)")
    detail: Detail = Detail.OPERATOR
    time_offset_s: int = Field(default=0, description="seconds added to every point's time; set by --time-base wall "
                               "(wall start − simulated start) so that live runs land at the wall clock")
    time_scale: float = Field(default=1.0, gt=0, description="simulated seconds per database second from the run's "
                              "start (--time-base wall: the run's speed, so that no point is ahead of the wall clock)")
    time_anchor_s: int = Field(default=0, description="simulated epoch second of the run's start (with time_scale)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {value!r} must be http(s)://HOST[:PORT][/PREFIX]")
        if parts.query or parts.fragment:
            raise ValueError(f"url {value!r} must have no query or fragment (give settings as fields)")
        if parts.path.rstrip("/").endswith(("/write", "/api/v2/write")):
            raise ValueError(f"url {value!r} must be the server's base URL, without the /write path")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as err:
            raise ValueError(f"url {value!r} has an invalid port: {err}") from None
        return value.rstrip("/")

    @model_validator(mode="after")
    def _api_fields(self) -> Self:
        problems = []
        if self.api is InfluxApi.V1 and self.token is not None:
            problems.append("token is for api v2; with api v1 give username and password")
        if self.api is InfluxApi.V2 and (self.username is not None or self.password is not None):
            problems.append("username/password are for api v1; with api v2 give a token")
        if self.password is not None and self.username is None:
            problems.append("password is given without username")
        if self.backoff_max_s < self.backoff_s:
            problems.append(f"backoff_max_s {self.backoff_max_s:g} must be >= backoff_s {self.backoff_s:g}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def spool_max_bytes(self) -> int:
        return int(self.spool_max_mb * 1e6)

    def describe(self) -> str:
        """The target without secrets, for logs: ``v1 http://host:8086 db=twin``."""
        what = "db" if self.api is InfluxApi.V1 else "bucket"
        return f"{self.api.value} {self.url} {what}={self.bucket}"


def _validated(values: dict[str, Any]) -> InfluxSettings:
    """``InfluxSettings`` from ``values`` with every validation problem in one ``InfluxSettingsError``."""
    try:
        return InfluxSettings.model_validate(values)
    except ValidationError as err:
        raise InfluxSettingsError(_problems(err)) from None


def _problems(err: ValidationError) -> str:
    lines = []
    for i, e in enumerate(err.errors(include_url=False), 1):
        where = ".".join(str(p) for p in e["loc"]) or "settings"
        shown = "" if where in ("token", "password") else f" (got {e.get('input')!r})"
        message = e["msg"].removeprefix("Value error, ")
        lines.append(f"{i}. {where}: {message}{shown}" if where != "settings" else f"{i}. {message}")
    return "invalid InfluxDB settings:\n" + "\n".join(lines)


_ALIASES = {"db": "bucket", "u": "username", "p": "password"}
_FROM_SCHEME = {"url", "api"}


def influx_settings_from_url(url: str, *, spool_dir: Path | None = None) -> InfluxSettings:
    """Settings from one of the URL forms in this module's docstring; ``spool_dir`` unless the URL sets it.

    Raises:
        InfluxSettingsError: unknown scheme or parameter, a parameter given twice, or an invalid value.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower().split("+")
    values: dict[str, Any] = {}
    if scheme[0] == "influxdb":
        if len(scheme) not in (2, 3) or scheme[1] not in ("v1", "v2") or scheme[2:] not in ([], ["https"]):
            raise InfluxSettingsError(
                f"URL scheme {parts.scheme!r} is not one of influxdb+v1, influxdb+v2, influxdb+v1+https, "
                "influxdb+v2+https, http, https"
            )
        values["api"] = scheme[1]
        http = "https" if scheme[2:] else "http"
        path = parts.path.strip("/")
        if path:
            if "/" in path:
                raise InfluxSettingsError(f"URL path {parts.path!r} must be one database/bucket name")
            values["bucket"] = urllib.parse.unquote(path)
        base_path = ""
    elif scheme == ["http"] or scheme == ["https"]:
        http, base_path = scheme[0], parts.path.rstrip("/")
    else:
        raise InfluxSettingsError(
            f"URL scheme {parts.scheme!r} is not one of influxdb+v1, influxdb+v2, influxdb+v1+https, "
            "influxdb+v2+https, http, https"
        )
    if not parts.hostname:
        raise InfluxSettingsError(f"URL {_redacted(url)!r} has no host")
    try:
        port = parts.port
    except ValueError as err:
        raise InfluxSettingsError(f"URL {_redacted(url)!r} has an invalid port: {err}") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    values["url"] = f"{http}://{host}{f':{port}' if port is not None else ''}{base_path}"
    user, password = parts.username, parts.password
    if user or password:
        api = values.get("api", dict(urllib.parse.parse_qsl(parts.query)).get("api", "v2"))
        if api == "v2":
            values["token"] = urllib.parse.unquote(password or user or "")
        else:
            values["username"] = urllib.parse.unquote(user or "")
            if password is not None:
                values["password"] = urllib.parse.unquote(password)
    known = set(InfluxSettings.model_fields)
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        name = _ALIASES.get(key, key)
        if name not in known or (name in _FROM_SCHEME and scheme[0] == "influxdb") or name == "url":
            allowed = sorted((known - {"url"} - (_FROM_SCHEME if scheme[0] == "influxdb" else set())) | set(_ALIASES))
            raise InfluxSettingsError(f"URL parameter {key!r} is unknown; expected one of {', '.join(allowed)}")
        if name in values:
            raise InfluxSettingsError(f"URL gives {name!r} twice (as {key!r} and in the URL)")
        values[name] = value
    if "spool_dir" not in values and spool_dir is not None:
        values["spool_dir"] = spool_dir
    return _validated(values)


def _redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
