"""SIGTERM stops a broker with SASL listeners cleanly while clients are connected: exit status
0 and "brokerd stopped" in its log, with authenticated clients on SASL_PLAINTEXT and SASL_SSL,
a client between SaslHandshake and SaslAuthenticate, one halfway through a SCRAM exchange, one
that sent a legacy (v0) handshake and half a token, and one that never finished its TLS
handshake. A stop that hangs would be ended by the platform's supervisor with SIGKILL (an
unclean stop: log recovery at the next start), so the wait here is generous but bounded.
"""

from __future__ import annotations

import signal
import socket
import ssl
import struct
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.brokerd.brokerd_wire import Wire, request_class
from tests.brokerd.test_brokerd_tls import PASSWORD, USER, TlsBroker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")


def _produced(conf: dict) -> Producer:
    producer = Producer(conf)
    producer.produce("stopping", b"v")
    assert producer.flush(30) == 0
    return producer


def test_sigterm_with_sasl_clients_connected_and_mid_handshake(tmp_path: Path) -> None:
    broker = TlsBroker(tmp_path / "broker")
    broker.start(timeout=60)
    plain_port, tls_port = broker.ports["SASL_PLAINTEXT"], broker.ports["SASL_SSL"]
    clients = [
        _produced(broker.sasl_config("SCRAM-SHA-256")),
        _produced({
            "bootstrap.servers": f"127.0.0.1:{tls_port}", "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(broker.ca_path), "sasl.mechanism": "PLAIN",
            "sasl.username": USER, "sasl.password": PASSWORD,
        }),
    ]
    wires = [Wire(plain_port) for _ in range(3)]
    wires[0].request(request_class(17, 1)(mechanism="PLAIN"))  # no SaslAuthenticate follows
    wires[1].request(request_class(17, 1)(mechanism="SCRAM-SHA-512"))
    wires[1].send(request_class(36, 2)(auth_bytes=b"n,,n=alice,r=clientnonce"))
    assert wires[1].recv_frame()  # the server-first message; the client-final never comes
    wires[2].request(request_class(17, 0)(mechanism="PLAIN"))
    wires[2].sock.sendall(struct.pack(">i", 64) + b"\x00alice")  # half a legacy token
    raw_tls = socket.create_connection(("127.0.0.1", tls_port))  # no ClientHello
    context = ssl.create_default_context(cafile=str(broker.ca_path))
    tls_socket = socket.create_connection(("127.0.0.1", tls_port))
    tls_wire = context.wrap_socket(tls_socket, server_hostname="127.0.0.1")
    header = struct.pack(">hhih", 17, 1, 1, 1) + b"t"
    body = struct.pack(">h", 5) + b"PLAIN"
    tls_wire.sendall(struct.pack(">i", len(header + body)) + header + body)  # handshake over TLS
    try:
        broker.proc.send_signal(signal.SIGTERM)
        try:
            status = broker.proc.wait(60)
        except subprocess.TimeoutExpired:
            broker.kill()
            pytest.fail(f"brokerd did not stop within 60 s of SIGTERM: {broker.stderr_tail()}")
        assert status == 0, broker.stderr_tail()
        assert "brokerd stopped" in broker.log_text()
    finally:
        for wire in wires:
            wire.close()
        raw_tls.close()
        tls_wire.close()
        del clients
