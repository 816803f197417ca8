"""A small blocking Kafka-protocol connection, for the requests confluent-kafka's AdminClient lacks
(DescribeLogDirs, AlterClientQuotas, DescribeClientQuotas, ConsumerGroupDescribe, client-metrics
configs); flexible versions get the tagged-field request and response headers.

Requests and responses are encoded with kio (brokerd's codec library, a main dependency). On a
SASL_SSL cluster the connection is TLS, verifying the platform CA and the broker's host name.
`internal_connection` logs in with the cluster's internal credential (SASL PLAIN), which is a
super user on its brokers.
"""

from __future__ import annotations

import io
import socket
import ssl
import struct

from kio.schema.sasl_authenticate.v0 import request as auth_req
from kio.schema.sasl_authenticate.v0 import response as auth_resp
from kio.schema.sasl_handshake.v1 import request as hs_req
from kio.schema.sasl_handshake.v1 import response as hs_resp
from kio.serial import entity_reader, entity_writer

from .kafka_admin import KafkaCluster

TIMEOUT_S = 5.0
CLIENT_ID = b"kastle-control-plane"


API_VERSIONS = 18  # its response header stays v0 in every version


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


class BrokerConnection:
    """One connection to one broker; `call` sends a request and reads its response, in order."""

    def __init__(self, host: str, port: int, ca_pem: str | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT_S)
        if ca_pem is not None:
            context = ssl.create_default_context(cadata=ca_pem)
            self.sock = context.wrap_socket(self.sock, server_hostname=host)
        self.corr = 0

    def close(self) -> None:
        self.sock.close()

    def call(self, entity, response_cls):
        cls = type(entity)
        self.corr += 1
        head = struct.pack(">hhih", cls.__api_key__, cls.__version__, self.corr, len(CLIENT_ID)) + CLIENT_ID
        flexible = bool(getattr(cls, "__flexible__", False))
        if flexible:
            head += b"\x00"  # request header v2: no tagged fields
        buf = io.BytesIO()
        entity_writer(cls)(buf, entity)
        payload = head + buf.getvalue()
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", self._read(4))
        frame = self._read(size)
        (corr,) = struct.unpack(">i", frame[:4])
        if corr != self.corr:
            raise ConnectionError(f"correlation id {corr} != {self.corr}")
        pos = 4
        if flexible and cls.__api_key__ != API_VERSIONS:  # response header v1: skip its tagged fields
            count, pos = _uvarint(frame, pos)
            for _ in range(count):
                _tag, pos = _uvarint(frame, pos)
                size, pos = _uvarint(frame, pos)
                pos += size
        value, _ = entity_reader(response_cls)(frame, pos)
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

    def plain_login(self, username: str, password: str) -> tuple[int, str]:
        """SASL PLAIN (SaslHandshake v1, SaslAuthenticate v0): (error code, error message); 0 is in."""
        hs = self.call(hs_req.SaslHandshakeRequest(mechanism="PLAIN"), hs_resp.SaslHandshakeResponse)
        if int(hs.error_code) != 0:
            return int(hs.error_code), f"SASL handshake refused ({hs.error_code})"
        auth = self.call(
            auth_req.SaslAuthenticateRequest(auth_bytes=f"\0{username}\0{password}".encode()),
            auth_resp.SaslAuthenticateResponse,
        )
        return int(auth.error_code), auth.error_message or ""


def cluster_conn(cluster: KafkaCluster, host: str, port: int) -> BrokerConnection:
    """A connection to one of the cluster's brokers: TLS (verified against its CA) on SASL_SSL."""
    ca_pem = (cluster.ca_bundle() or "") if cluster.security_protocol == "SASL_SSL" else None
    return BrokerConnection(host, port, ca_pem)


def internal_connection(cluster: KafkaCluster, host: str, port: int) -> BrokerConnection:
    """A connection to one broker, logged in as the cluster's internal user (ConnectionError if refused)."""
    conn = cluster_conn(cluster, host, port)
    try:
        code, message = conn.plain_login(cluster.internal_username, cluster.internal_password())
        if code != 0:
            raise ConnectionError(f"SASL authentication failed: {message}")
    except BaseException:
        conn.close()
        raise
    return conn
