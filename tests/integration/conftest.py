"""Fixtures of the integration tests. Each module that runs an embedded stack defines its
own `stack` fixture (the roles and options it needs); `pipeline` is a client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from epochflow.client import Pipeline
from epochflow.devstack.stack import EmbeddedStack
from tests.fixtures.stack import LIVE, stack_logs


@pytest.fixture
async def pipeline(stack: EmbeddedStack) -> AsyncIterator[Pipeline]:
    """Publishes to the module's stack and waits for it, through the roles it runs."""
    pipeline = await Pipeline.connect(stack.settings, roles=stack.roles)
    try:
        yield pipeline
    finally:
        await pipeline.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failing test's report shows the logs of the stacks running at that moment (a
    module's shared stack outlives the test, so its logs would otherwise be lost)."""
    report = yield
    if report.failed and LIVE:
        for n, stack in enumerate(LIVE):
            try:
                logs = stack_logs(stack)
            except Exception as error:  # noqa: BLE001 - the report must not end the session
                logs = f"logs not read: {error!r}"
            report.sections.append((f"stack logs {n + 1} ({stack.data_dir})", logs))
    return report
