"""The transaction requests of a cluster's brokers, over `sharedkit.kafka_wire` as the cluster's
internal user (confluent-kafka's AdminClient has none of them): ListTransactions and
DescribeTransactions on every broker (each coordinates the transactional ids of the
`__transaction_state` partitions it leads), DescribeProducers and WriteTxnMarkers on a
partition's leader."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kio.schema.describe_producers.v0 import request as dp_req
from kio.schema.describe_producers.v0 import response as dp_resp
from kio.schema.describe_transactions.v0 import request as dt_req
from kio.schema.describe_transactions.v0 import response as dt_resp
from kio.schema.list_transactions.v1 import request as lt_req
from kio.schema.list_transactions.v1 import response as lt_resp
from kio.schema.write_txn_markers.v1 import request as wm_req
from kio.schema.write_txn_markers.v1 import response as wm_resp
from kio.static.primitive import i16, i32, i64

from clusters.models import Cluster
from sharedkit import kafka_admin
from sharedkit.kafka_wire import BrokerConnection, internal_connection

OPEN_STATES = ("Ongoing", "PrepareCommit", "PrepareAbort")
#: The largest values the wire carries (INT32 partition index, INT64 producer id): input beyond
#: them is refused as invalid, never sent on to fail in the encoder.
MAX_PARTITION = 2**31 - 1
MAX_PRODUCER_ID = 2**63 - 1


def addresses(cluster: Cluster) -> list[tuple[str, int]]:
    """The cluster's broker addresses (409 unless it is RUNNING)."""
    if cluster.status != "RUNNING" or not cluster.bootstrap_servers:
        raise kafka_admin.ClusterNotRunning(cluster)
    out = []
    for item in (cluster.bootstrap_servers or "").split(","):
        host, _, port = item.strip().rpartition(":")
        if host and port:
            out.append((host.strip("[]"), int(port)))
    return out


@contextmanager
def connection(cluster: Cluster, host: str, port: int) -> Iterator[BrokerConnection]:
    conn = internal_connection(cluster, host, port)
    try:
        yield conn
    finally:
        conn.close()


def open_transactions(conn: BrokerConnection) -> list:
    """The open transactions this broker coordinates, described (DescribeTransactions entries)."""
    listed = conn.call(
        lt_req.ListTransactionsRequest(
            state_filters=OPEN_STATES, producer_id_filters=(), duration_filter=i64(-1)
        ),
        lt_resp.ListTransactionsResponse,
    )
    ids = tuple(t.transactional_id for t in listed.transaction_states)
    if not ids:
        return []
    described = conn.call(
        dt_req.DescribeTransactionsRequest(transactional_ids=ids), dt_resp.DescribeTransactionsResponse
    )
    return [t for t in described.transaction_states if int(t.error_code) == 0]


def partition_producers(conn: BrokerConnection, topic: str, partition: int):
    """(error code, producers) of one partition, as its leader knows them."""
    answer = conn.call(
        dp_req.DescribeProducersRequest(
            topics=(dp_req.TopicRequest(name=topic, partition_indexes=(i32(partition),)),)
        ),
        dp_resp.DescribeProducersResponse,
    )
    (found,) = answer.topics[0].partitions
    return int(found.error_code), found.active_producers


def write_abort_marker(
    conn: BrokerConnection, topic: str, partition: int, producer_id: int, epoch: int, coordinator_epoch: int
) -> int:
    """WriteTxnMarkers (abort) for one producer on one partition; the error code."""
    marker = wm_req.WritableTxnMarker(
        producer_id=i64(producer_id),
        producer_epoch=i16(epoch),
        transaction_result=False,
        topics=(wm_req.WritableTxnMarkerTopic(name=topic, partition_indexes=(i32(partition),)),),
        coordinator_epoch=i32(coordinator_epoch),
    )
    answer = conn.call(wm_req.WriteTxnMarkersRequest(markers=(marker,)), wm_resp.WriteTxnMarkersResponse)
    return int(answer.markers[0].topics[0].partitions[0].error_code)
