"""A clustered broker serves no client before it has applied the cluster's ACLs, quotas and
topic configs from etcd: connections wait in its listeners' backlog until then, so no request
is ever authorized against an empty ACL list.

The broker's own ``acls.json`` holds a DENY for ``User:ANONYMOUS`` on one topic, brought into
etcd at start (adoption) and then followed from there, with ``allow.everyone.if.no.acl.found``
on: answered before the bindings were applied, a Metadata request for that topic would be
allowed (UNKNOWN_TOPIC_OR_PARTITION); answered after, it is denied (TOPIC_AUTHORIZATION_FAILED).
A probe connects to the broker's port from before the process starts and records every answer.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from kio.index import load_payload_module
from kio.static.constants import EntityType

from tests.brokerd.brokerd_wire import Wire, request_class
from tests.brokerd.replication.clustertest import ClusterBroker
from tests.etcd_server import EtcdServer

TOPIC = "gated"
TOPIC_RESOURCE, LITERAL, ALL, DENY = 2, 3, 2, 2
UNKNOWN_TOPIC_OR_PARTITION, TOPIC_AUTHORIZATION_FAILED = 3, 29


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _metadata_request():
    module = load_payload_module(3, 4, EntityType.request)
    return request_class(3, 4)(
        topics=(module.MetadataRequestTopic(name=TOPIC),), allow_auto_topic_creation=False
    )


def _probe(host: str, port: int, answers: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with Wire(port, host=host, timeout=5) as wire:
                answers.append(wire.request(_metadata_request()).topics[0].error_code)
        except OSError:  # refused (not listening yet), timed out or closed while stopping
            stop.wait(0.002)


def test_no_request_is_authorized_before_the_cluster_acls_are_applied(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    broker = ClusterBroker(
        tmp_path / "broker-1", host="127.0.0.1", node_id=1,
        settings={"authorizer.enable": True, "allow.everyone.if.no.acl.found": True},
        extra_args=["--coordination", etcd_server.url(etcd_prefix)],
    )  # fmt: skip
    broker.data_dir.mkdir(parents=True)
    deny = [TOPIC_RESOURCE, TOPIC, LITERAL, "User:ANONYMOUS", "*", ALL, DENY]
    (broker.data_dir / "acls.json").write_text(json.dumps({"version": 1, "acls": [deny]}))
    broker.ports["PLAINTEXT"] = _free_port(broker.host)
    answers: list[int] = []
    stop = threading.Event()
    probe = threading.Thread(target=_probe, args=(broker.host, broker.port, answers, stop), daemon=True)
    probe.start()
    try:
        broker.start(timeout=60)
        # once healthy, answers keep coming; the first ones are those closest to the start
        while len(answers) < 5 and probe.is_alive():
            stop.wait(0.05)
    finally:
        stop.set()
        probe.join(10)
        assert broker.stop(timeout=60) == 0
    assert answers, "the probe never got an answer"
    assert set(answers) == {TOPIC_AUTHORIZATION_FAILED}, answers
