"""Factory fixtures for the broker-free domain tests (the builders live in factories.py)."""

from __future__ import annotations

import factories
import pytest


@pytest.fixture
def ctx_of():
    """ctx_of(method, base="USD") -> CostContext."""
    return factories.ctx


@pytest.fixture
def handler():
    """A PositionsHandler over in-memory stores."""
    return factories.memory_handler()
