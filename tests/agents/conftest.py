"""Fixtures for the Faust test-agent tests: the app with in-memory tables, fake topics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.agents import FakeBatchClient, FakeTopic, FakeTopics, changelog_recorder, load_app

_app = load_app("positions")  # before any test module imports epochflow.app


@pytest.fixture(scope="session")
def agent_app():
    """The app as faust's testing docs set it up: finalized, in-memory tables (before any
    table is touched), flow control resumed."""
    _app.finalize()
    _app.conf.store = "memory://"
    _app.flow_control.resume()
    return _app


@pytest.fixture
def fake_topics(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTopics]:
    """`streams.topics.results` and `.dead_letter` replaced by recorders (the agents look
    them up on the module at send time), the steps' record batches and the tables' own
    changelog sends too."""
    import faust

    from epochflow.agents import step_io
    from epochflow.app import app
    from epochflow.streams import topics

    fakes = FakeTopics(FakeTopic("results"), FakeTopic("dead-letter"))
    monkeypatch.setattr(topics, "results", fakes.results)
    monkeypatch.setattr(topics, "dead_letter", fakes.dead_letter)
    monkeypatch.setattr(faust.Table, "send_changelog", changelog_recorder(fakes.changelog))
    client = FakeBatchClient(fakes)
    monkeypatch.setattr(step_io, "batch_client", lambda producer: client)
    step_io.IN_FLIGHT.clear()

    async def flushed() -> None:  # nothing was produced: the fakes recorded it
        return None

    monkeypatch.setattr(app.producer, "flush", flushed)
    yield fakes
    step_io.IN_FLIGHT.clear()  # nothing of one test is awaited by the next
