"""The Faust side of the redo journal: "delivered" means every changelog record of a
step's writes is acknowledged by the broker, not only flushed (Faust's flush gives up on
its buffer after 0.1 s without a send)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
import pytest

from epochflow.agents.step_io import FaustStepIO
from epochflow.tables.journal import Write
from tests.fixtures.agents import ChangelogSend

pytestmark = pytest.mark.asyncio


class _Event:
    """One of a batch's events, as the step IO sets it current for the table writes."""

    message = SimpleNamespace(partition=0, topic="transactions", offset=0)


class _FlushedAtOnce:
    async def flush(self) -> None:
        return None


def _io(app: Any, monkeypatch: pytest.MonkeyPatch, unsent: list[ChangelogSend]) -> FaustStepIO:
    def send_changelog(table: Any, partition: int, *args: Any, **kwargs: Any) -> ChangelogSend:
        unsent.append(ChangelogSend(partition, acknowledged=False))
        return unsent[-1]

    monkeypatch.setattr(faust.Table, "send_changelog", send_changelog)
    from epochflow.tables.declare import journal_table

    return FaustStepIO(app.tables, journal_table(), {0: _Event()}, lambda name: None, _FlushedAtOnce())


async def _not_before(io: FaustStepIO, unsent: list[ChangelogSend]) -> None:
    delivered = asyncio.ensure_future(io.delivered())
    await asyncio.sleep(0.2)
    assert not delivered.done(), "delivered before the broker acknowledged the changelog records"
    for sent in unsent:
        sent.set_result(None)
    await asyncio.wait_for(delivered, 1.0)


async def test_a_journal_record_is_delivered_only_once_the_broker_has_it(agent_app, monkeypatch) -> None:
    unsent: list[ChangelogSend] = []
    io = _io(agent_app, monkeypatch, unsent)
    io.put_journal(0, b"head|p0", b'{"chunks": 0}')
    assert len(unsent) == 1
    await _not_before(io, unsent)


async def test_a_table_write_and_a_delete_are_delivered_only_once_the_broker_has_them(agent_app, monkeypatch) -> None:
    unsent: list[ChangelogSend] = []
    io = _io(agent_app, monkeypatch, unsent)
    io.apply(0, Write("step_journal", b"applied|transactions|p0", b"7"))
    io.apply(0, Write("step_journal", b"applied|transactions|p0", None))
    io.apply(0, Write("step_journal", b"never|written", None))  # nothing to delete: nothing sent
    assert len(unsent) == 2
    await _not_before(io, unsent)


async def test_a_step_cancelled_while_waiting_leaves_the_sends_to_complete(agent_app, monkeypatch) -> None:
    """A worker stopping cancels its step; the producer still completes the sends (Faust
    sets their results), so they must not be cancelled with it."""
    unsent: list[ChangelogSend] = []
    io = _io(agent_app, monkeypatch, unsent)
    io.put_journal(0, b"head|p0", b'{"chunks": 0}')
    delivered = asyncio.ensure_future(io.delivered())
    await asyncio.sleep(0.05)
    delivered.cancel()
    with pytest.raises(asyncio.CancelledError):
        await delivered
    assert not unsent[0].cancelled()
    unsent[0].set_result(None)


async def test_a_failed_send_fails_the_step(agent_app, monkeypatch) -> None:
    unsent: list[ChangelogSend] = []
    io = _io(agent_app, monkeypatch, unsent)
    io.put_journal(0, b"head|p0", b'{"chunks": 0}')
    unsent[0].set_exception(RuntimeError("broker said no"))
    with pytest.raises(RuntimeError, match="broker said no"):
        await io.delivered()
