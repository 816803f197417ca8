"""Stopping background tasks without swallowing the caller's own cancellation."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task | None, timeout: float = 5.0) -> None:
    """Cancel ``task`` and wait (bounded) for it to end; a cancellation of the caller
    itself still propagates, which ``suppress(CancelledError)`` around ``await task``
    would swallow."""
    if task is None or task.done():
        return
    task.cancel()
    await asyncio.wait({task}, timeout=timeout)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: a task that failed while stopping is gone either way
