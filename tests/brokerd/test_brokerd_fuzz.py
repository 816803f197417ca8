"""Fuzzing brokerd's request decoding and handlers, in-process (the CI version of bench/fuzz_brokerd.py).

A fixed seed drives the same structured-mutation loop as the full run: valid requests for every
registered (api key, version), encoded with kio, then bit flips, truncation, length-field
corruption, random tagged fields, huge array lengths, random api keys and versions. Every frame
must end in a response or a clean close: no exception escapes into the event loop, no handler
raises, no frame takes long, and RSS stays bounded.

The regression tests below replay what earlier fuzz runs found.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import struct
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FRAMES = 90_000


def _fuzz_module():
    name = "kastle_bench_fuzz_brokerd"
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, REPO / "bench" / "fuzz_brokerd.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return mod


def test_fuzz_frames_fixed_seed(tmp_path) -> None:
    fz = _fuzz_module()
    stats = asyncio.run(fz.fuzz(str(tmp_path), FRAMES, seed=20261125, frame_time_limit=2.0))
    report = "\n".join(f"--- {kind}: {data[:120].hex()}\n{text}" for kind, data, text in stats.samples)
    assert stats.frames == FRAMES
    assert stats.crashes == 0, report
    assert stats.handler_errors == 0, report
    assert stats.slow_frames == 0, report
    # the loop reached the handlers, not just the frame checks
    assert stats.answered > FRAMES // 10
    assert stats.closes > FRAMES // 10
    # bounded memory: after warm-up (schemas loaded, topics created) RSS barely moves
    assert stats.rss_peak_kb - stats.rss_warm_kb < 48 * 1024, (stats.rss_warm_kb, stats.rss_peak_kb)
    assert 0 < stats.fds_peak < 3 * 1000 + 200, stats.fds_peak  # plan cap: 1,000 partitions, 3 files each


def test_fuzz_frames_with_authorizer(tmp_path) -> None:
    """The same loop with ACLs enforced (authorizer.enable): every handler's authorization path, and
    fuzzed CreateAcls/DeleteAcls changing the ACLs under it."""
    fz = _fuzz_module()
    stats = asyncio.run(fz.fuzz(str(tmp_path), 40_000, seed=7, frame_time_limit=2.0, authorizer=True))
    report = "\n".join(f"--- {kind}: {data[:120].hex()}\n{text}" for kind, data, text in stats.samples)
    assert stats.crashes == 0 and stats.handler_errors == 0 and stats.slow_frames == 0, report
    assert stats.answered > 4_000


# --- regressions -----------------------------------------------------------------------------

async def _replay(tmp_path, frames: list[bytes], *, authenticated: bool = True) -> tuple[list, bool, int]:
    """Feed frames to one connection of an in-process broker: (error records, closed, bytes out)."""
    fz = _fuzz_module()
    from brokerd import credentials
    from brokerd.broker import Broker
    from brokerd.server import Connection
    from brokerd.settings import Settings

    creds = tmp_path / "credentials.json"
    credentials.set_user(creds, fz.USER, fz.PASSWORD)
    config = Settings.resolve(flags={
        "data.dir": str(tmp_path / "data"),
        "listeners": ["PLAINTEXT://127.0.0.1:0"],
        "credentials.file": str(creds),
    })
    errors: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record)

    handler = Collect(logging.ERROR)
    blog = logging.getLogger("brokerd")
    blog.addHandler(handler)
    loop = asyncio.get_running_loop()
    loop_errors: list = []
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    broker = Broker(config)
    await broker.start()
    try:
        listener, _server, port = broker.servers[0]
        conn = Connection(broker, listener, port)
        transport = fz.MemoryTransport(conn)
        conn.connection_made(transport)
        for frame in frames:
            conn.data_received(struct.pack(">i", len(frame)) + frame)
            await asyncio.sleep(0.01)
        closed = conn.closed
        out = transport.bytes_out
        conn.close()
        await asyncio.sleep(0.01)
    finally:
        await broker.stop()
        blog.removeHandler(handler)
    assert not loop_errors, loop_errors
    return errors, closed, out


def _body_null_array(api_key: int, version: int, before: bytes = b"") -> bytes:
    fz = _fuzz_module()
    # zero padding: the fields after the array decode (timeouts, flags), so only the null matters
    return fz.header(api_key, version, 7, False) + before + struct.pack(">i", -1) + bytes(16)


@pytest.mark.parametrize(
    ("api_key", "version", "before"),
    [
        (2, 1, struct.pack(">i", -1)),  # ListOffsets v1: replica id, then a null topics array
        (21, 1, b""),  # DeleteRecords v1: null topics
        (23, 2, struct.pack(">i", -1)),  # OffsetForLeaderEpoch v2... (replica id absent before v3)
        (32, 1, b""),  # DescribeConfigs v1: null resources
        (20, 1, b""),  # DeleteTopics v1: null topic names (a primitive array)
        (15, 0, b""),  # DescribeGroups v0: null group ids (a primitive array)
    ],
)
def test_null_non_nullable_array_closes_cleanly(tmp_path, api_key: int, version: int, before: bytes) -> None:
    """A null (-1) array where the schema does not allow null closed the connection through a
    handler's TypeError (logged as a handler failure); it is now refused as a malformed request."""
    frame = _body_null_array(api_key, version, before)
    errors, closed, _out = asyncio.run(_replay(tmp_path, [frame]))
    assert closed
    assert not errors, [r.getMessage() for r in errors]


def test_metadata_v10_null_topic_name_closes_cleanly(tmp_path) -> None:
    """Metadata v10-11 requests may carry a null name (with a topic id) but their responses cannot:
    the encoder raised. Kafka refuses the request (InvalidRequestException); so do we."""
    fz = _fuzz_module()
    # v10 flexible body: topics = compact array of 1 {topic_id (16 bytes), name null, no tags},
    # allow_auto_topic_creation, include_topic_authorized_operations, no tags
    body = b"\x02" + b"\x11" * 16 + b"\x00" + b"\x00" + b"\x01" + b"\x00" + b"\x00"
    frame = fz.header(3, 10, 9, True) + body
    errors, closed, _out = asyncio.run(_replay(tmp_path, [frame]))
    assert closed
    assert not errors, [r.getMessage() for r in errors]


def test_valid_requests_still_answered(tmp_path) -> None:
    """The seeds themselves (valid requests for every api key and version) mostly get answers."""
    import random

    fz = _fuzz_module()
    from brokerd import handlers

    pool = fz.seeds(random.Random(5), per_version=1)
    keys = {k for k, _v, _f in pool}
    assert keys >= set(handlers.APIS) - {0}  # Produce v3+ included via kio's schema too
    api_versions = next(f for k, v, f in pool if k == 18 and v == 3)
    errors, closed, out = asyncio.run(_replay(tmp_path, [api_versions]))
    assert not closed and out > 0
    assert not errors


def test_frames_read_into_their_own_buffers_hold_a_bounded_total(tmp_path, monkeypatch) -> None:
    """Clients announcing large frames and sending little else: past the budget a frame is gathered
    as it arrives (nothing allocated ahead for it), and a closed connection gives its share back."""
    fz = _fuzz_module()
    from brokerd import server
    from brokerd.broker import Broker
    from brokerd.server import Connection
    from brokerd.settings import Settings

    monkeypatch.setattr(server, "OWN_FRAMES_BYTES", 3 << 20)
    announce = struct.pack(">i", 2 << 20) + fz.header(0, 9, 1, True)  # a 2 MB Produce v9, begun

    async def run() -> None:
        config = Settings.resolve(flags={"data.dir": str(tmp_path / "data"),
                                         "listeners": ["PLAINTEXT://127.0.0.1:0"]})
        broker = Broker(config)
        await broker.start()
        try:
            listener, _server, port = broker.servers[0]
            conns = [Connection(broker, listener, port) for _ in range(3)]
            before = server._scratch.own_frames
            for conn in conns:
                conn.connection_made(fz.MemoryTransport(conn))
                conn.data_received(announce)
            assert [conn._frame is not None for conn in conns] == [True, False, False]
            assert server._scratch.own_frames - before == 2 << 20
            assert len(conns[1]._buf) == len(announce)  # gathered as it comes
            conns[0].close()
            await asyncio.sleep(0.01)
            assert server._scratch.own_frames == before
            conns[1].data_received(b"x" * 1000)  # room again: the rest goes to a buffer of its own
            assert conns[1]._frame is not None and conns[1]._frame_got == len(announce) - 4 + 1000
            assert server._scratch.own_frames - before == 2 << 20
            for conn in conns[1:]:
                conn.close()
            await asyncio.sleep(0.01)
            assert server._scratch.own_frames == before
        finally:
            await broker.stop()

    asyncio.run(run())
