"""A fault-injecting TCP proxy on loopback: network partitions between brokers and etcd
without touching the machine's network.

Each broker of a fault cluster binds its listeners on 127.0.1.N and advertises 127.0.0.N
with the same port, where a proxy of this module listens and forwards to it: clients and
the other brokers' followers all reach the broker through the proxy. Each broker reaches etcd
through a proxy of its own. A proxy learns which broker opened a connection from the kernel's
socket table (the peer's port names a socket inode, held open by one broker process), so a
partition can cut broker-to-broker and broker-to-etcd traffic while clients still reach
every broker, which is the case where an isolated leader must stop acknowledging.

A partition is a blackhole, as dropped packets are: bytes between the two sides are held
(the proxy stops reading, so TCP flow control stalls the sender) and new connections are
accepted but never forwarded until the partition heals; then everything held flows on, as
TCP's retransmissions would deliver it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable

ETCD = "etcd"


def free_port(host: str, *also: str) -> int:
    """A port free on ``host`` and on every host of ``also`` (the proxy's address and the
    broker's own, which share the port)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        try:
            for other in also:
                with socket.socket() as s:
                    s.bind((other, port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no port free on {host} and {also}")


def _hex_address(host: str, port: int) -> str:
    packed = socket.inet_aton(host)
    return f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"


def socket_owner(peer: tuple[str, int], pids: dict[int, object]) -> object | None:
    """Which of ``pids`` (pid -> name) holds the socket whose local address is ``peer``."""
    wanted = _hex_address(*peer[:2])
    inode = None
    try:
        with open("/proc/net/tcp") as table:
            for line in table:
                fields = line.split()
                if len(fields) > 9 and fields[1] == wanted:
                    inode = fields[9]
                    break
    except OSError:
        return None
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid, name in pids.items():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return name
            except OSError:
                continue
    return None


class FaultNet:
    """The proxies of one cluster, on an event loop of their own (a thread), and the set of
    cut links between nodes (broker ids and ``ETCD``)."""

    def __init__(self, pids: Callable[[], dict[int, object]]) -> None:
        self.pids = pids  # pid -> broker id of the brokers running now
        self.cut: set[frozenset] = set()
        self.held: set[tuple[object, object]] = set()  # (sender, receiver): one direction only
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="faultnet", daemon=True)
        self.thread.start()
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: set[asyncio.StreamWriter] = set()

    # --- faults -----------------------------------------------------------------------------
    def isolate(self, node: object, others: list[object]) -> None:
        """Cut ``node`` from every node of ``others`` (both directions)."""
        self.cut |= {frozenset((node, other)) for other in others if other != node}

    def hold(self, sender: object, receiver: object) -> None:
        """Hold the bytes ``sender`` sends to ``receiver`` (answers included) while those the
        other way still flow: a request arrives, its answer does not until the heal."""
        self.held.add((sender, receiver))

    def release(self, sender: object, receiver: object) -> None:
        self.held.discard((sender, receiver))

    def heal(self) -> None:
        self.cut = set()
        self.held = set()

    def blocked(self, a: object, b: object) -> bool:
        return a is not None and b is not None and frozenset((a, b)) in self.cut

    def _stalled(self, sender: object, receiver: object) -> bool:
        return self.blocked(sender, receiver) or (sender, receiver) in self.held

    # --- proxies ----------------------------------------------------------------------------
    def proxy(
        self, listen: tuple[str, int], target: tuple[str, int], owner: object, source: object | None = None
    ) -> None:
        """Forward ``listen`` to ``target``. ``owner`` is the node behind the target; the
        connecting node is ``source`` when given (a proxy used by one broker only), else
        found by the socket's owner among the brokers' processes (clients are none)."""

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_server(
                lambda r, w: self._connection(r, w, target, owner, source), *listen, reuse_address=True
            )

        self.servers.append(asyncio.run_coroutine_threadsafe(start(), self.loop).result(10))

    async def _connection(self, reader, writer, target, owner, source) -> None:
        self.connections.add(writer)
        if source is None:
            peer = writer.get_extra_info("peername")
            source = await asyncio.to_thread(socket_owner, peer, self.pids()) if peer else None
        while self.blocked(source, owner):  # a SYN into the blackhole: nothing answers yet
            await asyncio.sleep(0.05)
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            self.connections.discard(writer)
            return
        self.connections.add(up_writer)
        await asyncio.gather(
            self._pump(reader, up_writer, source, owner), self._pump(up_reader, writer, owner, source)
        )
        self.connections.discard(writer)
        self.connections.discard(up_writer)

    async def _pump(self, reader, writer, sender, receiver) -> None:
        try:
            while True:
                data = await reader.read(65536)
                while self._stalled(sender, receiver):
                    await asyncio.sleep(0.05)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.close()
            for writer in list(self.connections):
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
