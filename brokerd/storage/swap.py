"""Crash-safe replacement of a run of segments by one cleaned segment.

Inside a partition directory ``D``:

1. the cleaner writes the new segment (``<base>.log``, ``.index``, ``.timeindex``) under
   ``D/.cleaning/`` and fsyncs the files and that directory;
2. it commits by writing ``D/cleaner-swap.json`` (``{"base": b, "old": [bases]}``) with an
   atomic rename and a directory fsync — before this point a crash leaves the old segments,
   after it recovery finishes the swap;
3. it moves the new files over ``D/<base>.*`` (rename is atomic per file), deletes the other
   old segments, fsyncs ``D`` and removes the manifest.

:func:`recover` runs when a partition log opens: with a manifest it redoes step 3 (every step
is idempotent), without one it discards ``.cleaning/``. So a ``kill -9`` at any point leaves
either the old segments or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil

from brokerd.durable import atomic_write_json, fsync_dir

STAGING_DIR = ".cleaning"
MANIFEST = "cleaner-swap.json"
EXTENSIONS = (".index", ".timeindex", ".log")  # the log last: its presence marks a segment


def segment_file(base: int, ext: str) -> str:
    return f"{base:020d}{ext}"


def in_dir(dir_fd: int, name: str) -> str:
    """A path to ``name`` inside the directory open as ``dir_fd``, even if it was renamed since."""
    return f"/proc/self/fd/{dir_fd}/{name}"


def write_manifest(dir_fd: int, base: int, old: list[int]) -> None:
    """The commit point of a swap: durable once this returns."""
    atomic_write_json(in_dir(dir_fd, MANIFEST), {"base": base, "old": old})


def move_into_place(dir_fd: int, base: int) -> None:
    """Step 3a: the staged files replace ``<base>.*`` (the index files first)."""
    for ext in EXTENSIONS:
        name = segment_file(base, ext)
        with contextlib.suppress(FileNotFoundError):
            os.replace(os.path.join(STAGING_DIR, name), name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def finish(dir_fd: int, base: int, old: list[int]) -> None:
    """Step 3b: delete the replaced segments, make it durable, drop the manifest."""
    for b in old:
        if b == base:
            continue
        for ext in (".log", ".index", ".timeindex"):  # the log first: no segment without it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(segment_file(b, ext), dir_fd=dir_fd)
    os.fsync(dir_fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(MANIFEST, dir_fd=dir_fd)
    os.fsync(dir_fd)


def discard(dir_fd: int) -> None:
    """Drop an uncommitted swap (or a committed one that must not happen: manifest first)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(MANIFEST, dir_fd=dir_fd)
        os.fsync(dir_fd)
    clear_staging(dir_fd)


def clear_staging(dir_fd: int) -> None:
    try:
        staging = os.open(STAGING_DIR, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    try:
        for name in os.listdir(staging):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(name, dir_fd=staging)
    finally:
        os.close(staging)


def recover(directory: str) -> str | None:
    """Complete or discard a swap a crash interrupted. Returns what was done (for the log)."""
    manifest = os.path.join(directory, MANIFEST)
    staging = os.path.join(directory, STAGING_DIR)
    done = None
    if os.path.exists(manifest):
        with open(manifest) as fh:
            doc = json.load(fh)
        base, old = int(doc["base"]), [int(b) for b in doc["old"]]
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            move_into_place(dir_fd, base)
            finish(dir_fd, base, old)
        finally:
            os.close(dir_fd)
        done = f"completed an interrupted cleaner swap of segment(s) {old} into {base}"
    if os.path.isdir(staging):
        shutil.rmtree(staging, ignore_errors=True)
        fsync_dir(directory)
        done = done or "discarded an unfinished cleaner pass"
    return done
