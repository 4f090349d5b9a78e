"""Settings from the environment: every variable checked at once, with a message naming
the variable, its value and what it accepts; secrets masked wherever they are shown."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from epochflow.config import VARIABLES, ConfigError, Settings, describe, load_settings, mask_url


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    return raised.value.problems


def test_no_variables_give_the_defaults() -> None:
    assert load_settings({}) == Settings()
    assert load_settings({"EPOCHFLOW_PARTITIONS": "", "DATABASE_URL": ""}) == Settings()  # empty is unset


def test_every_setting_has_a_variable() -> None:
    attributes = {f.name for f in dataclasses.fields(Settings)} - {"extra"}
    assert set(VARIABLES.values()) == attributes


def test_values_are_read_into_the_settings() -> None:
    settings = load_settings({
        "EPOCHFLOW_KAFKA_URL": "kafka://k1:9092,k2:9093",
        "DATABASE_URL": "postgresql://u:pw@db:5432/epochflow?sslmode=require",
        "EPOCHFLOW_PARTITIONS": "12",
        "EPOCHFLOW_TOPIC_PREFIX": "prod.ef-1",
        "EPOCHFLOW_DATA_DIR": "/var/lib/epochflow",
        "EPOCHFLOW_LOG_LEVEL": "info",
        "EPOCHFLOW_RETRY_BACKOFF_S": "0",
        "EPOCHFLOW_FANOUT_RATE": "12.5",
        "EPOCHFLOW_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "EPOCHFLOW_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "EPOCHFLOW_KAFKA_SASL_USERNAME": "svc",
        "EPOCHFLOW_API_READS_NEED_TOKEN": "Yes",
        "EPOCHFLOW_API_MAX_BODY_BYTES": "1024",
    })
    assert (settings.kafka_bootstrap, settings.partitions, settings.topic_prefix) == ("k1:9092,k2:9093", 12, "prod.ef-1")
    assert settings.data_dir == Path("/var/lib/epochflow")
    assert (settings.log_level, settings.retry_backoff_s, settings.fanout_rate_per_s) == ("INFO", 0.0, 12.5)
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (settings.api_reads_need_token, settings.api_max_body_bytes) == (True, 1024)


def test_a_malformed_value_names_the_variable_its_value_and_what_is_accepted() -> None:
    assert problems({"EPOCHFLOW_PARTITIONS": "twelve"}) == ["EPOCHFLOW_PARTITIONS='twelve': expected a whole number ≥ 1"]


@pytest.mark.parametrize(("variable", "value"), [
    ("EPOCHFLOW_PARTITIONS", "0"),
    ("EPOCHFLOW_PARTITIONS", "-4"),
    ("EPOCHFLOW_PARTITIONS", "4.5"),
    ("EPOCHFLOW_FANOUT_RATE", "-1"),
    ("EPOCHFLOW_FANOUT_RATE", "0"),
    ("EPOCHFLOW_FANOUT_RATE", "inf"),
    ("EPOCHFLOW_SESSION_TIMEOUT_S", "-8"),
    ("EPOCHFLOW_PROCESSING_TIMEOUT_S", "0"),
    ("EPOCHFLOW_RETRY_BACKOFF_S", "-1"),
    ("EPOCHFLOW_TICK_S", "nan"),
    ("EPOCHFLOW_BATCH_SIZE", "0"),
    ("EPOCHFLOW_FANOUT_IN_FLIGHT", "-32"),
    ("EPOCHFLOW_API_MAX_BODY_BYTES", "-1"),
    ("EPOCHFLOW_FETCH_WAIT_MS", "0"),
    ("EPOCHFLOW_WEB_PORT", "70000"),
    ("EPOCHFLOW_WEB_HOST", "local host"),
    ("EPOCHFLOW_TOPIC_PREFIX", "my topics"),
    ("EPOCHFLOW_WORKER_ID", "a/b"),
    ("EPOCHFLOW_LOG_LEVEL", "loud"),
    ("EPOCHFLOW_KAFKA_URL", "kafka"),
    ("EPOCHFLOW_KAFKA_URL", "k1:9092,k2"),
    ("EPOCHFLOW_KAFKA_SECURITY_PROTOCOL", "TLS"),
    ("EPOCHFLOW_KAFKA_SASL_MECHANISM", "GSSAPI"),
    ("EPOCHFLOW_KAFKA_SSL_CAFILE", "/nonexistent/ca.pem"),
    ("EPOCHFLOW_API_READS_NEED_TOKEN", "maybe"),
    ("DATABASE_URL", "mysql://db/x"),
    ("DATABASE_URL", "postgresql://db:port/x"),
    ("DATABASE_URL", "postgresql://db/x?sslmode=sometimes"),
])
def test_values_out_of_range_are_refused(variable: str, value: str) -> None:
    [problem] = problems({variable: value})
    assert problem.startswith(f"{variable}={value!r}: expected "), problem


def test_every_problem_is_reported_at_once() -> None:
    found = problems({"EPOCHFLOW_PARTITIONS": "0", "EPOCHFLOW_FANOUT_RATE": "-5", "EPOCHFLOW_TICK_S": "soon"})
    assert [p.split("=", 1)[0] for p in found] == ["EPOCHFLOW_PARTITIONS", "EPOCHFLOW_TICK_S", "EPOCHFLOW_FANOUT_RATE"]
    assert "invalid configuration" in str(ConfigError(found)) and all(p in str(ConfigError(found)) for p in found)


def test_a_refused_database_url_does_not_show_its_password() -> None:
    [problem] = problems({"DATABASE_URL": "postgresql://me:hunter2@db:nope/x"})
    assert "hunter2" not in problem and "me:***@db" in problem


def test_sasl_needs_a_user_name() -> None:
    assert problems({"EPOCHFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}) == [
        "EPOCHFLOW_KAFKA_SASL_USERNAME: required with EPOCHFLOW_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"
    ]


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://me:hunter2@db:5432/x", "postgresql://me:***@db:5432/x"),
    ("postgresql://me:p@ss/w@db/x?sslmode=require", "postgresql://me:***@db/x?sslmode=require"),
    ("postgresql://db/x?user=me&password=hunter2&sslmode=require", "postgresql://db/x?user=me&password=***&sslmode=require"),
    ("postgresql://postgres@127.0.0.1:5432/epochflow", "postgresql://postgres@127.0.0.1:5432/epochflow"),
    ("", ""),
])
def test_mask_url_hides_passwords_only(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_describe_tells_the_source_of_each_value_and_masks_secrets() -> None:
    env = {"DATABASE_URL": "postgresql://me:hunter2@db/x", "EPOCHFLOW_API_TOKEN": "s3cret",
           "EPOCHFLOW_KAFKA_SASL_PASSWORD": "pa55", "EPOCHFLOW_KAFKA_SASL_USERNAME": "svc",
           "EPOCHFLOW_PARTITIONS": "12"}
    entries = {e["variable"]: e for e in describe(load_settings(env), env)}
    assert set(entries) == set(VARIABLES)
    assert entries["EPOCHFLOW_PARTITIONS"] | {"accepted": ""} == {
        "variable": "EPOCHFLOW_PARTITIONS", "value": "12", "source": "environment", "secret": False, "accepted": ""}
    assert (entries["EPOCHFLOW_TOPIC_PREFIX"]["value"], entries["EPOCHFLOW_TOPIC_PREFIX"]["source"]) == ("epochflow", "default")
    assert entries["DATABASE_URL"]["value"] == "postgresql://me:***@db/x"
    assert entries["EPOCHFLOW_API_TOKEN"]["value"] == entries["EPOCHFLOW_KAFKA_SASL_PASSWORD"]["value"] == "***"
    assert entries["EPOCHFLOW_API_READS_NEED_TOKEN"]["value"] == "false"
    assert not any(secret in str(entries) for secret in ("hunter2", "s3cret", "pa55"))
