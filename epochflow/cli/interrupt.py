"""Running a long command's coroutine so that SIGTERM (and SIGHUP) stop it like Ctrl-C.

`asyncio.run` turns Ctrl-C into a cancellation of the main task, so every `async with`
unwinds and an embedded stack stops what it started (PostgreSQL, broker, workers). The
default action of SIGTERM kills the process on the spot instead, and PostgreSQL, which
`pg_ctl` detaches from us, outlives it. Here SIGTERM and SIGHUP cancel the main task the
same way; the command then ends as after Ctrl-C.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def run_interruptible(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, with SIGTERM and SIGHUP handled like Ctrl-C: the main task is
    cancelled (its cleanup runs) and KeyboardInterrupt is raised once it has ended."""
    signalled: list[int] = []

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(signum: int) -> None:
            signalled.append(signum)
            task.cancel()

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await main
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        if signalled:
            raise KeyboardInterrupt from None
        raise
