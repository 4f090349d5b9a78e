"""`POST /ingest/` without a broker (publishing is replaced by a recorder): what it
refuses and why, and that its answer says what was published and what was not."""

from __future__ import annotations

import json

import pytest

from epochflow.web import views  # noqa: I001
from tests.unit.web.served import client, settings

GOOD = {"type": "transaction", "transaction_id": "T1", "portfolio_id": "P", "security_id": "S",
        "transaction_type": "BUY", "transaction_date": "2025-08-01T10:00:00Z", "quantity": "1", "price": "1",
        "gross_amount": "1", "trade_fee": "0", "trade_currency": "USD"}
CHECKPOINT = {"type": "checkpoint", "name": "after the buy", "expected": {}}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list:
    published: list = []

    async def record(events: list) -> int:
        published.extend(events)
        return len(events)

    monkeypatch.setattr(views, "send_events", record)
    return published


async def post(body: bytes) -> tuple[int, dict]:
    async with client(settings()) as http:
        response = await http.post("/ingest/", data=body)
        return response.status, await response.json()


async def test_a_checkpoint_is_valid_but_answered_as_not_published(sent: list) -> None:
    status, body = await post(json.dumps([GOOD, CHECKPOINT]).encode())
    assert status == 200
    assert body["published"] == 1
    [left_out] = body["not_published"]
    assert (left_out["index"], left_out["type"]) == (1, "checkpoint") and "not sent" in left_out["reason"]
    assert [event.type for event in sent] == ["transaction"]


async def test_a_lone_checkpoint_publishes_nothing(sent: list) -> None:
    status, body = await post(json.dumps(CHECKPOINT).encode())
    assert (status, body["published"], len(body["not_published"])) == (200, 0, 1)
    assert sent == []


@pytest.mark.parametrize(
    "event, named",
    [
        ({**GOOD, "portfolio_id": "P_NUL\u0000X"}, "portfolio_id"),
        ({**GOOD, "quantity": "9e999999"}, "quantity"),
        ({**GOOD, "fee": 5}, "trade_fee"),
        ({**GOOD, "transaction_type": "DIVIDEND", "quantty": "1"}, "quantty"),
        ({**GOOD, "price": "-1"}, "price"),
        ({**GOOD, "security_id": "S\x01"}, "security_id"),
    ],
)
async def test_a_hostile_event_is_422_naming_the_field_and_nothing_is_published(sent: list, event: dict,
                                                                                 named: str) -> None:
    status, body = await post(json.dumps([GOOD, event]).encode())
    assert status == 422
    [problem] = body["invalid"]
    assert problem["index"] == 1 and named in problem["reason"]
    assert sent == []


async def test_a_json_float_is_refused_not_rounded(sent: list) -> None:
    raw = json.dumps({**GOOD, "price": "PRICE"}).replace('"PRICE"', "100.123456789012345678")
    status, body = await post(raw.encode())
    assert status == 422 and "float" in body["invalid"][0]["reason"]
    assert sent == []


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


async def test_a_body_nested_ten_thousand_deep_is_refused_with_a_reason(sent: list) -> None:
    deep_inside_an_event = json.dumps({"events": [{**CHECKPOINT, "expected": {"x": nested(70)}}]}).encode()
    for body in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, deep_inside_an_event):
        status, answer = await post(body)
        assert status == 422 and "nested deeper than 64 levels" in answer["error"]
    assert sent == []


async def test_brackets_inside_strings_do_not_count_as_nesting(sent: list) -> None:
    status, body = await post(json.dumps([GOOD, {**CHECKPOINT, "note": '{["\\' * 100}]).encode())
    assert status == 200, body
    status, body = await post(json.dumps({"events": [{**CHECKPOINT, "expected": {"x": nested(60)}}]}).encode())
    assert status == 200, body


async def test_an_event_that_is_not_an_object_is_named(sent: list) -> None:
    status, body = await post(json.dumps([GOOD, "{\"type\": \"business_date\", \"date\": \"2025-08-01\"}", 7]).encode())
    assert status == 422
    assert [problem["index"] for problem in body["invalid"]] == [1, 2]
    assert "JSON object" in body["invalid"][0]["reason"]


async def test_a_refusal_lists_at_most_a_hundred_events(sent: list) -> None:
    status, body = await post(json.dumps([{**GOOD, "price": "-1"}] * 150).encode())
    assert status == 422 and len(body["invalid"]) == 100 and "150" in body["error"]


# -- CSV bodies -----------------------------------------------------------------------------

CSV_HEADER = "type,transaction_id,portfolio_id,security_id,transaction_type,transaction_date,quantity,price," \
             "gross_amount,trade_fee,trade_currency,price_date,currency"
CSV_GOOD = "transaction,T1,P,S,BUY,2025-08-01T10:00:00Z,1,1,1,0,USD,,"
CSV_PRICE = "market_price,,,S,,,,12.5,,,,2025-08-01,USD"


async def post_csv(text: str, query: str = "", content_type: str = "text/csv") -> tuple[int, dict]:
    async with client(settings()) as http:
        response = await http.post(f"/ingest/{query}", data=text.encode(), headers={"Content-Type": content_type})
        return response.status, await response.json()


async def test_a_csv_body_is_validated_by_the_event_models_and_published(sent: list) -> None:
    status, body = await post_csv("\n".join([CSV_HEADER, CSV_GOOD, CSV_PRICE]) + "\n",
                                  content_type="text/csv; charset=utf-8")
    assert (status, body) == (200, {"published": 2, "not_published": []})
    assert sent == [views.parse_event(GOOD), views.parse_event(
        {"type": "market_price", "security_id": "S", "price_date": "2025-08-01", "price": "12.5", "currency": "USD"})]


async def test_a_csv_of_one_type_takes_it_from_the_query(sent: list) -> None:
    status, body = await post_csv("security_id,price_date,price,currency\nS,2025-08-01,12.5,USD\n", "?type=market_price")
    assert (status, body["published"]) == (200, 1) and sent[0].type == "market_price"
    status, body = await post_csv("security_id,price_date,price,currency\n", "?type=prices")
    assert status == 400 and "did you mean market_price?" in body["error"]
    status, body = await post_csv("security_id,price_date,price,currency\nS,2025-08-01,12.5,USD\n")
    assert status == 422 and body["invalid"][0]["row"] == 1 and "no type column" in body["invalid"][0]["reason"]


async def test_an_invalid_csv_row_is_422_by_row_and_field_and_nothing_is_published(sent: list) -> None:
    bad_quantity = CSV_GOOD.replace(",1,1,1,0,", ",ten,1,1,0,")
    bad_date = CSV_PRICE.replace("2025-08-01", "2025-13-01")
    text = "\n".join([CSV_HEADER + ",fee", CSV_GOOD, bad_quantity, "trade," + CSV_GOOD.split(",", 1)[1], bad_date]) + "\n"
    status, body = await post_csv(text)
    assert status == 422 and body["error"] == "invalid rows; nothing was published"
    assert [(p["row"], p["field"]) for p in body["invalid"]] == [(1, "fee"), (3, "quantity"), (4, "type"), (5, "price_date")]
    assert body["invalid"][0]["reason"] == "unknown column (did you mean trade_fee?)"
    assert body["invalid"][1]["reason"] == 'must be a decimal number written like "12.5" or "-3"'
    assert body["invalid"][2]["reason"].startswith("unknown event type 'trade'")
    assert sent == []


async def test_an_empty_csv_body_is_refused(sent: list) -> None:
    status, body = await post_csv("")
    assert status == 422 and body["error"].startswith("body refused: empty: no header row")
    assert sent == []


async def test_type_is_refused_with_a_json_body(sent: list) -> None:
    async with client(settings()) as http:
        response = await http.post("/ingest/?type=transaction", data=json.dumps(GOOD).encode())
        assert response.status == 400 and "text/csv" in (await response.json())["error"]
    assert sent == []
