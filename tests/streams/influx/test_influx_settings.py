"""``InfluxSettings`` validation and the ``--influx URL`` forms."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.influx.recorder import Detail, InfluxApi, InfluxSettings, InfluxSettingsError, influx_settings_from_url


def test_defaults_are_the_documented_ones() -> None:
    s = InfluxSettings(url="http://127.0.0.1:8086", bucket="twin")
    assert (s.api, s.batch_points, s.flush_interval_s, s.detail, s.spool_dir) == (
        InfluxApi.V2, 5000, 1.0, Detail.OPERATOR, None)
    assert s.spool_max_bytes == 256_000_000
    assert s.describe() == "v2 http://127.0.0.1:8086 bucket=twin"


@pytest.mark.parametrize(("values", "match"), [
    ({"batch_points": 0}, r"batch_points\n.*greater than or equal to 1.*input_value=0"),
    ({"url": "ftp://host"}, r"url 'ftp://host' must be http\(s\)://HOST"),
    ({"url": "http://host:8086/write"}, r"must be the server's base URL, without the /write path"),
    ({"url": "http://host:99999"}, r"invalid port"),
    ({"backoff_s": 3.0, "backoff_max_s": 1.0}, r"backoff_max_s 1 must be >= backoff_s 3"),
    ({"api": "v1", "token": "t"}, r"token is for api v2; with api v1 give username and password"),
    ({"api": "v2", "username": "u"}, r"username/password are for api v1"),
    ({"api": "v1", "password": "p"}, r"password is given without username"),
    ({"detail": "everything"}, r"detail\n.*'operator' or 'full'"),
    ({"bucket": ""}, r"bucket\n.*at least 1 character"),
    ({"spool_max_mb": 0}, r"spool_max_mb\n.*greater than 0"),
    ({"batchpoints": 10}, r"batchpoints\n.*Extra inputs are not permitted"),
])
def test_invalid_settings_name_the_field_value_and_rule(values: dict[str, object], match: str) -> None:
    base: dict[str, object] = {"url": "http://127.0.0.1:8086", "bucket": "twin"}
    with pytest.raises(ValidationError, match=match):
        InfluxSettings.model_validate(base | values)


def test_v1_url_with_user_and_settings_in_the_query(tmp_path: Path) -> None:
    s = influx_settings_from_url("influxdb+v1://ops:s3cr%40t@db.example:8086/twin?detail=full&batch_points=100",
                                 spool_dir=tmp_path)
    assert (s.api, s.url, s.bucket, s.username, s.detail, s.batch_points, s.spool_dir) == (
        InfluxApi.V1, "http://db.example:8086", "twin", "ops", Detail.FULL, 100, tmp_path)
    assert s.password is not None and s.password.get_secret_value() == "s3cr@t"
    assert "s3cr" not in repr(s)


def test_v2_url_with_token_https_and_org() -> None:
    s = influx_settings_from_url("influxdb+v2+https://:tok3n@influx.example/metrics?org=grid&flush_interval_s=0.5")
    assert (s.api, s.url, s.bucket, s.org, s.flush_interval_s) == (
        InfluxApi.V2, "https://influx.example", "metrics", "grid", 0.5)
    assert s.token is not None and s.token.get_secret_value() == "tok3n"


def test_http_url_with_everything_in_the_query_and_a_path_prefix() -> None:
    s = influx_settings_from_url("http://127.0.0.1:8428/proxy/influx?bucket=b&org=o&token=t&spool_max_mb=5")
    assert (s.api, s.url, s.bucket, s.org, s.spool_max_mb) == (InfluxApi.V2, "http://127.0.0.1:8428/proxy/influx",
                                                                 "b", "o", 5.0)
    v1 = influx_settings_from_url("http://127.0.0.1:8086?api=v1&db=twin&u=ops&p=pw")
    assert (v1.api, v1.bucket, v1.username) == (InfluxApi.V1, "twin", "ops")


@pytest.mark.parametrize(("url", "match"), [
    ("influxdb+v3://h/db", r"URL scheme 'influxdb\+v3' is not one of influxdb\+v1, influxdb\+v2"),
    ("mqtt://h/db", r"URL scheme 'mqtt' is not one of"),
    ("influxdb+v1://h/db?colour=red", r"URL parameter 'colour' is unknown; expected one of .*batch_points"),
    ("influxdb+v1://h/db?api=v2", r"URL parameter 'api' is unknown"),
    ("influxdb+v1://h/db?db=other", r"URL gives 'bucket' twice \(as 'db' and in the URL\)"),
    ("influxdb+v1://h/a/b", r"URL path '/a/b' must be one database/bucket name"),
    ("influxdb+v1://h:port/db", r"has an invalid port"),
    ("influxdb+v1://h/db?batch_points=many", r"1\. batch_points: Input should be a valid integer.*'many'"),
    ("http://h:8086?org=o", r"1\. bucket: Field required"),
    ("influxdb+v1://u:pw@h/db?max_retries=-1&timeout_s=0",
     r"invalid InfluxDB settings:\n1\. timeout_s: Input should be greater than 0 \(got '0'\)\n"
     r"2\. max_retries: Input should be greater than or equal to 0 \(got '-1'\)$"),
])
def test_bad_urls_say_what_is_wrong(url: str, match: str) -> None:
    with pytest.raises(InfluxSettingsError, match=match):
        influx_settings_from_url(url)


def test_a_bad_password_is_never_shown() -> None:
    with pytest.raises(InfluxSettingsError) as caught:
        influx_settings_from_url("influxdb+v1://u:hunter2@h:notaport/db")
    assert "hunter2" not in str(caught.value)
