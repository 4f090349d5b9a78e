"""Connection security from the environment: Kafka SASL/TLS options for every client and
PostgreSQL TLS parameters in DATABASE_URL."""

from __future__ import annotations

import ssl
from dataclasses import replace

import pytest

from epochflow.config import Settings
from epochflow.sinks.schema import tls_options
from epochflow.streams.security import SecurityConfigError, client_options, faust_options

BASE = Settings(kafka_url="kafka:9092")


def test_plaintext_needs_no_options() -> None:
    assert client_options(BASE) == {}
    assert faust_options(BASE) == {}


def test_sasl_ssl_gives_every_client_credentials_and_a_verifying_context() -> None:
    settings = replace(BASE, kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                       kafka_sasl_username="svc", kafka_sasl_password="s3cret")
    options = client_options(settings)
    assert (options["security_protocol"], options["sasl_mechanism"], options["sasl_plain_username"],
            options["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-512", "svc", "s3cret")
    assert options["ssl_context"].verify_mode is ssl.CERT_REQUIRED
    credentials = faust_options(settings)["broker_credentials"]
    assert (credentials.username, credentials.password) == ("svc", "s3cret")


def test_ssl_without_sasl() -> None:
    options = client_options(replace(BASE, kafka_security_protocol="SSL"))
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"kafka_security_protocol": "TLS"}, "EPOCHFLOW_KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI", "kafka_sasl_username": "u"},
         "EPOCHFLOW_KAFKA_SASL_MECHANISM"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "EPOCHFLOW_KAFKA_SASL_USERNAME"),
    ],
    ids=["unknown protocol", "unsupported mechanism", "SASL without a user"],
)
def test_bad_security_settings_say_which_variable(changes, message) -> None:
    with pytest.raises(SecurityConfigError, match=message):
        client_options(replace(BASE, **changes))


@pytest.mark.parametrize(
    "url, stripped, ssl_arg",
    [
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db", None),
        ("postgresql://u@h/db?sslmode=require", "postgresql://u@h/db", "require"),
        ("postgresql://u@h/db?application_name=x&sslmode=disable", "postgresql://u@h/db?application_name=x", "disable"),
    ],
    ids=["no TLS", "require", "other parameters kept"],
)
def test_database_url_tls_modes(url, stripped, ssl_arg) -> None:
    got_url, connect_args = tls_options(url)
    assert got_url == stripped
    assert connect_args.get("ssl") == ssl_arg


def test_database_url_verify_full_builds_a_hostname_checking_context() -> None:
    url, connect_args = tls_options("postgresql://u@h/db?sslmode=verify-full")
    context = connect_args["ssl"]
    assert url == "postgresql://u@h/db"
    assert context.check_hostname and context.verify_mode is ssl.CERT_REQUIRED


def test_database_url_with_an_unknown_sslmode_is_refused() -> None:
    with pytest.raises(ValueError, match="sslmode"):
        tls_options("postgresql://u@h/db?sslmode=maybe")
