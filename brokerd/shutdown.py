"""The last step of a stop: the tasks still running once every part of the broker stopped.

``asyncio.run`` cancels whatever tasks remain when the broker's main coroutine returns and
waits for them without a bound, so one task that does not end when cancelled keeps the process
alive after "brokerd stopped" until a supervisor's SIGKILL (which costs a recovery at the next
start). Here they are cancelled with a bound, and the ones that did not end are named in the
log with where they wait.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("brokerd")


def _where(task: asyncio.Task) -> str:
    """The chain of coroutines the task waits in, outermost first."""
    places = []
    awaited = task.get_coro()
    while awaited is not None and len(places) < 12:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            places.append(type(awaited).__name__)
            break
        code = frame.f_code
        places.append(f"{code.co_name} ({code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno})")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return " > ".join(places) or "?"


async def end_remaining_tasks(timeout: float = 5.0) -> list[asyncio.Task]:
    """Cancel every other task and wait up to ``timeout``; return those still running."""
    current = asyncio.current_task()
    remaining = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    if not remaining:
        return []
    for task in remaining:
        task.cancel()
    _done, pending = await asyncio.wait(remaining, timeout=timeout)
    for task in pending:
        log.warning("stopping: task %s did not end when cancelled (at %s)", task.get_name(), _where(task))
    return list(pending)
