"""Size on disk per partition, by DescribeLogDirs (confluent-kafka's AdminClient lacks it).

A small blocking Kafka client: one connection per broker, SASL PLAIN with the cluster's
internal credential (SaslHandshake v1, SaslAuthenticate v0), then DescribeLogDirs v1, all
encoded with kio (brokerd's codec library, a main dependency). Best effort: if a broker does
not answer, the size is unknown (None) and the rest of the topic view is still served.
"""

from __future__ import annotations

import io
import logging
import socket
import struct

from kio.schema.describe_log_dirs.v1 import request as dld_req
from kio.schema.describe_log_dirs.v1 import response as dld_resp
from kio.schema.sasl_authenticate.v0 import request as auth_req
from kio.schema.sasl_authenticate.v0 import response as auth_resp
from kio.schema.sasl_handshake.v1 import request as hs_req
from kio.schema.sasl_handshake.v1 import response as hs_resp
from kio.schema.types import TopicName
from kio.serial import entity_reader, entity_writer

from clusters.models import Cluster

logger = logging.getLogger(__name__)
TIMEOUT_S = 5.0


class _Conn:
    def __init__(self, host: str, port: int, ca_pem: str | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT_S)
        if ca_pem is not None:  # SASL_SSL, verifying the platform CA and the host
            import ssl

            context = ssl.create_default_context(cadata=ca_pem)
            self.sock = context.wrap_socket(self.sock, server_hostname=host)
        self.corr = 0

    def close(self) -> None:
        self.sock.close()

    def call(self, entity, response_cls):
        cls = type(entity)
        self.corr += 1
        client_id = b"kastle-control-plane"
        head = struct.pack(">hhih", cls.__api_key__, cls.__version__, self.corr, len(client_id)) + client_id
        buf = io.BytesIO()
        entity_writer(cls)(buf, entity)
        payload = head + buf.getvalue()
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", self._read(4))
        frame = self._read(size)
        (corr,) = struct.unpack(">i", frame[:4])
        if corr != self.corr:
            raise ConnectionError(f"correlation id {corr} != {self.corr}")
        value, _ = entity_reader(response_cls)(frame, 4)
        return value

    def _read(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self.sock.recv(n)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)


def cluster_conn(cluster: Cluster, host: str, port: int) -> _Conn:
    """A connection to one of the cluster's brokers: TLS (verified against its CA) on SASL_SSL."""
    ca_pem = None
    if cluster.security_protocol == "SASL_SSL":
        from pki.services import ca_bundle

        ca_pem = ca_bundle(cluster) or ""
    return _Conn(host, port, ca_pem)


def _broker_sizes(
    host: str, port: int, cluster: Cluster, topic: str, partitions: list[int]
) -> dict[int, int]:
    conn = cluster_conn(cluster, host, port)
    try:
        hs = conn.call(hs_req.SaslHandshakeRequest(mechanism="PLAIN"), hs_resp.SaslHandshakeResponse)
        if int(hs.error_code) != 0:
            raise ConnectionError(f"SASL handshake refused ({hs.error_code})")
        secret = f"\0{cluster.internal_username}\0{cluster.internal_password()}".encode()
        auth = conn.call(
            auth_req.SaslAuthenticateRequest(auth_bytes=secret), auth_resp.SaslAuthenticateResponse
        )
        if int(auth.error_code) != 0:
            raise ConnectionError(f"SASL authentication failed: {auth.error_message}")
        request = dld_req.DescribeLogDirsRequest(
            topics=(dld_req.DescribableLogDirTopic(topic=TopicName(topic), partitions=tuple(partitions)),)
        )
        response = conn.call(request, dld_resp.DescribeLogDirsResponse)
    finally:
        conn.close()
    sizes: dict[int, int] = {}
    for result in response.results:
        if int(result.error_code) != 0:
            continue
        for t in result.topics:
            if t.name == topic:
                for p in t.partitions:
                    if not p.is_future_key:
                        index = int(p.partition_index)
                        sizes[index] = sizes.get(index, 0) + int(p.partition_size)
    return sizes


def partition_sizes(cluster: Cluster, topic: str, partitions: list[int]) -> dict[int, int] | None:
    """{partition: bytes on disk} summed over the cluster's brokers, or None if unknown."""
    sizes: dict[int, int] = {}
    try:
        for server in filter(None, (s.strip() for s in cluster.bootstrap_servers.split(","))):
            host, _, port = server.rpartition(":")
            found = _broker_sizes(host.strip("[]"), int(port), cluster, topic, partitions)
            for partition, size in found.items():
                sizes[partition] = sizes.get(partition, 0) + size
    except (OSError, ValueError, struct.error) as exc:
        logger.warning("DescribeLogDirs on %s failed: %s", cluster.public_id, exc)
        return None
    return sizes
