"""Kafka connection security from the settings (EPOCHFLOW_KAFKA_SECURITY_PROTOCOL and
friends): the same for the workers (Faust) and for every plain aiokafka client epochflow
opens (CLI producer, admin, lag and highwater readers)."""

from __future__ import annotations

import ssl
from typing import Any

from epochflow.config import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SecurityConfigError(ValueError):
    pass


def _check(settings: Settings) -> str:
    protocol = settings.kafka_security_protocol
    if protocol not in PROTOCOLS:
        raise SecurityConfigError(f"EPOCHFLOW_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    if protocol.startswith("SASL"):
        if settings.kafka_sasl_mechanism not in MECHANISMS:
            raise SecurityConfigError(f"EPOCHFLOW_KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}")
        if not settings.kafka_sasl_username:
            raise SecurityConfigError("EPOCHFLOW_KAFKA_SASL_USERNAME is required with a SASL protocol")
    return protocol


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A verifying TLS context when the protocol uses TLS (with the CA file if given)."""
    if _check(settings) not in ("SSL", "SASL_SSL"):
        return None
    return ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's producer, consumer and admin clients."""
    protocol = _check(settings)
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if protocol.startswith("SASL"):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    return options


def faust_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `faust.App`: broker credentials for the same settings."""
    import faust

    protocol = _check(settings)
    if protocol == "PLAINTEXT":
        return {}
    context = ssl_context(settings)
    if protocol == "SSL":
        return {"broker_credentials": faust.SSLCredentials(context)}
    return {"broker_credentials": faust.SASLCredentials(
        username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
        mechanism=settings.kafka_sasl_mechanism, ssl_context=context)}
