"""Fixtures of the integration tests. Each module that runs an embedded stack defines its
own `stack` fixture (the roles and options it needs); `pipeline` is a client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from epochflow.client import Pipeline
from epochflow.devstack.stack import EmbeddedStack


@pytest.fixture
async def pipeline(stack: EmbeddedStack) -> AsyncIterator[Pipeline]:
    """Publishes to the module's stack and waits for it, through the roles it runs."""
    pipeline = await Pipeline.connect(stack.settings, roles=stack.roles)
    try:
        yield pipeline
    finally:
        await pipeline.close()
