"""The two ways in: `epochflow ingest FILE` and `POST /ingest/`, validating every event and
publishing only when all are valid."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from epochflow.client import Pipeline
from epochflow.sinks.reads.scenario import fetch_positions
from tests.fixtures.stack import read_dead_letters, running_stack

pytestmark = pytest.mark.integration

PORTFOLIO = {"type": "portfolio", "portfolio_id": "P_IN", "base_currency": "USD", "open_date": "2025-01-01"}


def txn(tid: str, **change) -> dict:
    return {"type": "transaction", "transaction_id": tid, "portfolio_id": "P_IN", "security_id": "S_IN",
            "transaction_type": "BUY", "transaction_date": "2025-08-01T10:00:00Z", "quantity": "10", "price": "5",
            "gross_amount": "50", "trade_fee": "0", "trade_currency": "USD", **change}


@pytest.fixture(scope="module")
def stack():
    with running_stack() as running:
        yield running


def _cli(stack, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("EPOCHFLOW_KAFKA_URL", "DATABASE_URL")}
    env["EPOCHFLOW_DATA_DIR"] = str(stack.data_dir)  # finds the running stack through its run file
    return subprocess.run([sys.executable, "-m", "epochflow", *args], capture_output=True, text=True, env=env, timeout=120)


def _post(port: int, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/ingest/", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def _positions(stack) -> list:
    pipeline = await Pipeline.connect(stack.settings, roles=stack.roles)
    try:
        await pipeline.quiesce(120)
        return await fetch_positions(pipeline.engine, "P_IN")
    finally:
        await pipeline.close()


def test_cli_rejects_a_file_with_an_invalid_event_and_publishes_nothing(stack, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in [PORTFOLIO, txn("CLI_BAD", quantity="ten")]) + "\n")
    done = _cli(stack, "ingest", str(path))
    assert done.returncode != 0
    assert "line 2" in done.stderr and "quantity" in done.stderr
    assert asyncio.run(_positions(stack)) == []


def test_cli_publishes_a_valid_file(stack, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps({"events": [PORTFOLIO, txn("CLI_OK")]}))
    done = _cli(stack, "ingest", str(path))
    assert done.returncode == 0, done.stderr
    assert "published 2 events" in done.stdout
    [position] = asyncio.run(_positions(stack))
    assert position.quantity == 10


def test_http_ingest_answers_422_with_the_field(stack) -> None:
    port = next(w["web_port"] for w in stack.describe()["workers"] if w["role"] == "positions")
    status, body = _post(port, json.dumps([txn("HTTP_BAD", transaction_type="GIFT")]).encode())
    assert status == 422
    assert body["invalid"][0]["index"] == 0 and "transaction_type" in body["invalid"][0]["reason"]
    status, body = _post(port, b"{not json")
    assert status == 422


def test_http_ingest_publishes_valid_events(stack) -> None:
    port = next(w["web_port"] for w in stack.describe()["workers"] if w["role"] == "positions")
    status, body = _post(port, json.dumps([PORTFOLIO, txn("HTTP_OK", transaction_date="2025-08-02T10:00:00Z")]).encode())
    assert (status, body) == (200, {"published": 2, "not_published": []})
    [position] = asyncio.run(_positions(stack))
    assert position.quantity == 20


def test_status_reports_roles_and_lag(stack) -> None:
    done = _cli(stack, "status", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report["roles"]) >= {"positions", "sink"}
    assert all(w["alive"] for w in report["roles"]["positions"]["workers"])


def test_positions_read_view_returns_the_current_epoch_with_reprocessing_status(stack) -> None:
    asyncio.run(_positions(stack))  # everything published so far is in PostgreSQL
    port = next(w["web_port"] for w in stack.describe()["workers"] if w["role"] == "positions")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/portfolios/P_IN/positions/", timeout=30) as response:
        body = json.loads(response.read())
    [row] = body["positions"]
    assert row["security_id"] == "S_IN" and row["reprocessing_status"] in ("CURRENT", "IN_PROGRESS")
    assert row["epoch"] == 0
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/portfolios/NOPE/positions/", timeout=30)
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as error:
        assert error.code == 404


HOSTILE = [
    (txn("H_NUL", portfolio_id="P_NUL\u0000X"), "portfolio_id"),
    (txn("H_EXP", quantity="9e999999"), "quantity"),
    (txn("H_FEE", fee=5), "fee"),
    (txn("H_CTRL", security_id="S\x01"), "security_id"),
    (txn("H_NEG", price="-5"), "price"),
]


def test_cli_and_http_refuse_every_hostile_event_naming_the_field(stack, tmp_path: Path) -> None:
    port = next(w["web_port"] for w in stack.describe()["workers"] if w["role"] == "positions")
    for event, field in HOSTILE:
        status, body = _post(port, json.dumps([event]).encode())
        assert status == 422 and field in body["invalid"][0]["reason"], body
    raw = json.dumps(txn("H_FLOAT", price="PRICE")).replace('"PRICE"', "100.123456789012345678")
    status, body = _post(port, raw.encode())
    assert status == 422 and "float" in body["invalid"][0]["reason"]
    status, body = _post(port, b"[" * 10_000 + b"]" * 10_000)
    assert status == 422 and "nested" in body["error"]
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(json.dumps(event) for event, _ in HOSTILE) + "\n")
    done = _cli(stack, "ingest", str(path))
    assert done.returncode != 0
    for number, (_, field) in enumerate(HOSTILE, start=1):
        assert f"line {number}" in done.stderr and field in done.stderr, done.stderr


def test_a_checkpoint_is_answered_as_not_published(stack) -> None:
    port = next(w["web_port"] for w in stack.describe()["workers"] if w["role"] == "positions")
    status, body = _post(port, json.dumps([{"type": "checkpoint", "name": "c", "expected": {}}]).encode())
    assert status == 200 and body["published"] == 0
    assert [(item["index"], item["type"]) for item in body["not_published"]] == [(0, "checkpoint")]


async def _publish_raw_then_valid(stack, raw: list[bytes], valid: dict) -> tuple[list[dict], list]:
    from epochflow.schemas.events import parse_event
    from epochflow.streams.partitioning import partition_for

    pipeline = await Pipeline.connect(stack.settings, roles=stack.roles)
    try:
        key = "P_IN|S_IN"
        partition = partition_for(key, stack.settings.partitions)
        for value in raw:  # what a producer outside epochflow could write onto the topic
            await pipeline.send_raw("transactions", partition, key.encode(), value)
        await pipeline.publish([parse_event(valid)])
        letters = await read_dead_letters(pipeline, len(raw), "H_TOPIC_", timeout_s=60)
        await pipeline.quiesce(120)
        return letters, await fetch_positions(pipeline.engine, "P_IN")
    finally:
        await pipeline.close()


def test_a_hostile_message_on_the_topic_is_dead_lettered_and_what_follows_reaches_postgresql(stack) -> None:
    raw = [json.dumps(txn(f"H_TOPIC_{n}", **{field: value})).encode()
           for n, (field, value) in enumerate([("portfolio_id", "P_NUL\u0000X"), ("quantity", "9e999999"),
                                               ("fee", 5)])]
    before = asyncio.run(_positions(stack))
    quantity_before = before[0].quantity if before else 0
    letters, positions = asyncio.run(_publish_raw_then_valid(
        stack, raw, txn("TOPIC_OK", transaction_date="2025-08-03T10:00:00Z")))
    reasons = sorted(letter["reason"] for letter in letters)
    assert any("portfolio_id" in reason for reason in reasons), reasons
    assert any("quantity" in reason for reason in reasons), reasons
    assert any("fee: unknown field" in reason for reason in reasons), reasons
    assert all(letter["stage"] == "positions.apply" and letter["topic"].endswith("transactions") for letter in letters)
    [position] = positions
    assert position.quantity == quantity_before + 10


async def _create_topics_and_count_messages(bootstrap: str, settings, create: bool) -> dict[tuple[str, int], int]:
    """Create the topics of `settings` (when `create`) and count the messages on each
    partition of the input topics."""
    from aiokafka import TopicPartition

    from epochflow.streams.admin import create_topics
    from epochflow.streams.highwater import fetch_highwaters
    from epochflow.streams.names import topic_name, topic_specs

    if create:
        await create_topics(bootstrap, topic_specs(settings))
    partitions = [TopicPartition(topic_name(settings, short), p)
                  for short in ("transactions", "reference") for p in range(settings.partitions)]
    ends = await fetch_highwaters(bootstrap, partitions, 30)
    return {(tp.topic.rsplit(".", 1)[1], tp.partition): end for tp, end in ends.items()}


def test_cli_refuses_a_topic_whose_partition_count_is_not_the_configured_one(stack, tmp_path: Path) -> None:
    import dataclasses
    import uuid

    from epochflow.streams.partitioning import partition_for

    on_broker = dataclasses.replace(stack.settings, partitions=6, topic_prefix=f"parts{uuid.uuid4().hex[:8]}")
    bootstrap = stack.settings.kafka_bootstrap
    assert set(asyncio.run(_create_topics_and_count_messages(bootstrap, on_broker, create=True)).values()) == {0}
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in [PORTFOLIO, txn("PARTS_1")]) + "\n")

    def ingest(partitions: int) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
        env.update(EPOCHFLOW_KAFKA_URL=stack.settings.kafka_url, EPOCHFLOW_TOPIC_PREFIX=on_broker.topic_prefix,
                   EPOCHFLOW_PARTITIONS=str(partitions), EPOCHFLOW_DATA_DIR=str(tmp_path / "data"))
        return subprocess.run([sys.executable, "-m", "epochflow", "ingest", str(path)], capture_output=True,
                              text=True, env=env, timeout=120)

    refused = ingest(4)
    assert refused.returncode != 0
    assert (f"topic {on_broker.topic_prefix}.transactions has 6 partitions, EPOCHFLOW_PARTITIONS is 4: "
            "set EPOCHFLOW_PARTITIONS=6 (every role must agree)") in refused.stderr, refused.stderr
    assert "nothing was published" in refused.stderr
    assert set(asyncio.run(_create_topics_and_count_messages(bootstrap, on_broker, create=False)).values()) == {0}

    published = ingest(6)
    assert published.returncode == 0, published.stderr
    counts = asyncio.run(_create_topics_and_count_messages(bootstrap, on_broker, create=False))
    assert {p: counts[("reference", p)] for p in range(6)} == {p: 1 for p in range(6)}  # the portfolio, everywhere
    key_partition = partition_for("P_IN|S_IN", 6)
    assert {p: counts[("transactions", p)] for p in range(6)} == {p: int(p == key_partition) for p in range(6)}


EXAMPLE_CSV = Path(__file__).resolve().parents[2] / "examples" / "csv_ingest"


async def _positions_of(stack, portfolio_id: str, wait: bool = True) -> list:
    pipeline = await Pipeline.connect(stack.settings, roles=stack.roles)
    try:
        if wait:
            await pipeline.quiesce(120)
        return await fetch_positions(pipeline.engine, portfolio_id)
    finally:
        await pipeline.close()


def test_cli_publishes_csv_files_and_waits_until_the_roles_running_are_quiescent(stack) -> None:
    done = _cli(stack, "ingest", "--wait", *map(str, sorted(EXAMPLE_CSV.glob("*.csv"))))
    assert done.returncode == 0, done.stderr
    assert "published 29 events" in done.stdout
    # this stack runs positions and the sink only: no scheduler, so nothing is valued
    assert "quiescent after" in done.stdout and "valued" not in done.stdout
    # read without waiting: --wait returned once everything published was in PostgreSQL
    positions = asyncio.run(_positions_of(stack, "CSV_EUR_GROWTH", wait=False))
    assert {p.security_id: p.quantity for p in positions} == {"CSV_ACME": 90, "CSV_BRIT": 250}


def test_http_ingest_takes_csv_all_or_nothing(stack) -> None:
    port = next(w["web_port"] for w in stack.describe()["workers"] if w["role"] == "positions")
    header = "type,portfolio_id,base_currency,transaction_id,security_id,transaction_type,transaction_date,quantity," \
             "price,gross_amount,trade_currency"
    good = ["portfolio,P_CSV,USD,,,,,,,,", "transaction,P_CSV,,CSV_1,S_CSV,BUY,2025-08-01T10:00:00Z,7,5,35,USD"]
    bad = "transaction,P_CSV,,CSV_2,S_CSV,BUY,2025-08-01T11:00:00Z,7,5,35,usd"

    def post(rows: list[str]) -> tuple[int, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/ingest/", data="\n".join([header, *rows]).encode(),
                                         method="POST", headers={"Content-Type": "text/csv"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, body = post([*good, bad])
    assert status == 422 and body["invalid"] == [
        {"row": 4, "field": "trade_currency", "reason": "String should match pattern '^[A-Z]{3}$'"}]
    status, body = post(good)
    assert (status, body) == (200, {"published": 2, "not_published": []})
    [position] = asyncio.run(_positions_of(stack, "P_CSV"))
    assert position.quantity == 7
