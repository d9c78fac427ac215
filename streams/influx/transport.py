"""One POST of a line-protocol batch to an InfluxDB server, and what came of it.

``v2`` goes through influxdb-client's synchronous ``WriteApi`` (``/api/v2/write``, org, bucket, token);
``v1`` is a plain ``POST /write?db=…&precision=s`` with urllib3 (InfluxDB 1.x has no v2 API), with basic
authentication when a user is set. Neither retries on its own (the recorder does, with back-off and spool).

Outcomes: ``WRITTEN`` (2xx); ``REJECTED`` (400, 413, 422: the data are bad, sending them again cannot help;
for an InfluxDB 1.x partial write, ``rejected_points`` is the ``dropped=N`` the server reported); ``FAILED``
(no answer, timeout, 5xx, 429, and also 401/403/404, which a fixed token or a created bucket cures — those
batches are kept for later rather than lost).
"""

from __future__ import annotations

import base64
import logging
import re
import urllib.parse
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, cast

import urllib3

from streams.influx.settings import InfluxApi, InfluxSettings

log = logging.getLogger(__name__)
_PARTIAL = re.compile(r"dropped=(\d+)")
_BODY_CHARS = 300
_REJECT_STATUS = frozenset({400, 413, 422})


class Outcome(Enum):
    WRITTEN = "written"
    REJECTED = "rejected"
    FAILED = "failed"


@dataclass(frozen=True)
class PostResult:
    outcome: Outcome
    detail: str = ""
    rejected_points: int | None = None
    """Points the server dropped from a partially written batch, when it said how many; None = all of them."""


class Transport(Protocol):
    def post(self, body: bytes) -> PostResult:
        """Send one batch of line protocol (UTF-8, second precision). Never raises for server or network trouble."""
        ...

    def close(self) -> None: ...


def _classify(status: int, body: str, where: str) -> PostResult:
    text = body.strip()[:_BODY_CHARS]
    if 200 <= status < 300:
        return PostResult(Outcome.WRITTEN)
    if status in _REJECT_STATUS:
        partial = _PARTIAL.search(text)
        return PostResult(Outcome.REJECTED, f"{where} answered HTTP {status}: {text}",
                          int(partial.group(1)) if partial else None)
    hint = {401: " (check the token or user)", 403: " (check the token's permissions)",
            404: " (does the bucket/database exist?)"}.get(status, "")
    return PostResult(Outcome.FAILED, f"{where} answered HTTP {status}{hint}: {text}")


class V1Transport:
    """InfluxDB 1.x ``/write``; creates the database once when the server says it is not found."""

    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        self._pool = urllib3.PoolManager(
            num_pools=1, maxsize=1, retries=False,
            timeout=urllib3.Timeout(connect=settings.timeout_s, read=settings.timeout_s),
        )
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password is not None else ""
            token = base64.b64encode(f"{settings.username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._write_url = f"{settings.url}/write"
        self._fields = {"db": settings.bucket, "precision": "s"}
        self._created = False

    def post(self, body: bytes) -> PostResult:
        result = self._post(body)
        if (result.outcome is Outcome.FAILED and "database not found" in result.detail
                and self._settings.create_database and not self._created):
            created = self._create_database()
            if created.outcome is not Outcome.WRITTEN:
                return created
            self._created = True  # once: a database that is dropped again while we write is not ours to fight
            result = self._post(body)
        return result

    def _post(self, body: bytes) -> PostResult:
        url = f"{self._write_url}?{urllib.parse.urlencode(self._fields)}"
        try:
            response = self._pool.request("POST", url, body=body, headers=self._headers, preload_content=True,
                                          redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            return PostResult(Outcome.FAILED, f"POST {self._write_url}: {type(err).__name__}: {err}")
        return _classify(response.status, response.data.decode(errors="replace"), f"POST {self._write_url}")

    def _create_database(self) -> PostResult:
        name = self._settings.bucket.replace("\\", "\\\\").replace('"', '\\"')
        url = f"{self._settings.url}/query"
        log.info("influx: database %r not found on %s; creating it", self._settings.bucket, self._settings.url)
        try:
            response = self._pool.request("POST", url, fields={"q": f'CREATE DATABASE "{name}"'},
                                          encode_multipart=False, headers={
                                              k: v for k, v in self._headers.items() if k == "Authorization"})
        except (urllib3.exceptions.HTTPError, OSError) as err:
            return PostResult(Outcome.FAILED, f"POST {url} (CREATE DATABASE): {type(err).__name__}: {err}")
        text = response.data.decode(errors="replace")
        if response.status != 200 or '"error"' in text:
            return PostResult(Outcome.FAILED, f"POST {url} (CREATE DATABASE) answered HTTP {response.status}: "
                              f"{text[:_BODY_CHARS]}")
        return PostResult(Outcome.WRITTEN)

    def close(self) -> None:
        self._pool.clear()


class V2Transport:
    """influxdb-client's synchronous write API; its own retries are off (``retries=False``)."""

    def __init__(self, settings: InfluxSettings) -> None:
        from influxdb_client import InfluxDBClient, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.rest import ApiException

        token = settings.token.get_secret_value() if settings.token is not None else ""  # "": no auth header
        self._client = InfluxDBClient(url=settings.url, token=token, org=settings.org,
                                      timeout=int(settings.timeout_s * 1000), retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket, self._org = settings.bucket, settings.org
        self._precision = cast(WritePrecision, WritePrecision.S)  # the client types its constants as str
        self._api_exception = ApiException
        self._where = f"POST {settings.url}/api/v2/write"

    def post(self, body: bytes) -> PostResult:
        try:
            self._api.write(bucket=self._bucket, org=self._org, record=body, write_precision=self._precision)
        except self._api_exception as err:
            data = err.body.decode(errors="replace") if isinstance(err.body, bytes) else str(err.body or "")
            return _classify(int(err.status or 0), data or str(err.reason or ""), self._where)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            return PostResult(Outcome.FAILED, f"{self._where}: {type(err).__name__}: {err}")
        return PostResult(Outcome.WRITTEN)

    def close(self) -> None:
        self._api.close()
        self._client.close()


def create_transport(settings: InfluxSettings) -> Transport:
    return V1Transport(settings) if settings.api is InfluxApi.V1 else V2Transport(settings)
