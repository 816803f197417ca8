"""Durable small files: write to a temporary name, fsync, rename over, fsync the directory.

A reader (or a broker restarting after a crash) sees the old file or the new one, never a torn
one; the directory fsync makes the rename itself survive a power loss.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def fsync_dir(path: str | os.PathLike[str], dir_fd: int | None = None) -> None:
    """Make a directory's entries (a rename, a create, an unlink) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike[str], data: bytes | str, *, mode: int = 0o644, durable: bool = True
) -> None:
    """Replace ``path`` with ``data`` atomically; ``durable`` adds the file and directory fsyncs.

    Not durable is for files that only describe the running process (pid, bound ports).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        view = memoryview(data.encode() if isinstance(data, str) else data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(p.parent)


def atomic_write_json(path: str | os.PathLike[str], doc: Any, *, durable: bool = True, **dumps: Any) -> None:
    atomic_write(path, json.dumps(doc, **dumps), durable=durable)
