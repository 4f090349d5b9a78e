"""`epochflow demo --keep-running` once the demo has run: where to look is printed, the
command waits until it is interrupted, and an interruption is a clean exit (the stack is
stopped by the `async with` the interruption unwinds; `tests/integration/test_stopped_by_signal.py`
checks that for every long command)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from epochflow.cli.main import cli
from epochflow.config import load_settings
from epochflow.demo import runner


def stack(web_host: str = "127.0.0.1") -> SimpleNamespace:
    workers = [SimpleNamespace(role="positions", web_port=6101), SimpleNamespace(role="api", web_port=6107)]
    settings = dataclasses.replace(load_settings(), web_host=web_host)
    return SimpleNamespace(workers=workers, settings=settings, data_dir=Path("/tmp/epochflow-demo-x"))


def test_the_pages_are_the_api_workers() -> None:
    assert runner.page_urls(stack()) == {
        "dashboard": "http://127.0.0.1:6107/dashboard/",
        "API docs": "http://127.0.0.1:6107/docs/",
        "portfolio": "http://127.0.0.1:6107/portfolios/GLOBAL_GROWTH_USD/page/",
    }
    assert runner.page_urls(stack("0.0.0.0"))["dashboard"] == "http://127.0.0.1:6107/dashboard/"


async def test_it_prints_where_to_look_then_waits_until_cancelled() -> None:
    lines: list[str] = []
    waiting = asyncio.ensure_future(runner._serve_until_stopped(stack(), lines.append))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert any("http://127.0.0.1:6107/docs/" in line for line in lines)
    assert any("epochflow ingest --data-dir /tmp/epochflow-demo-x" in line for line in lines)
    assert lines[-1] == "Ctrl-C stops everything."
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


@pytest.mark.parametrize("keep_running, code", [(True, 0), (False, 1)])
def test_an_interruption_ends_keep_running_cleanly(monkeypatch: pytest.MonkeyPatch, keep_running: bool,
                                                   code: int) -> None:
    async def interrupted(echo, keep: bool) -> int:
        assert keep is keep_running
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_demo", interrupted)
    result = CliRunner().invoke(cli, ["demo", "--keep-running"] if keep_running else ["demo"])
    assert result.exit_code == code
    assert ("stopped; nothing left running." in result.output) is keep_running
