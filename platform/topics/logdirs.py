"""Size on disk per partition, by DescribeLogDirs (confluent-kafka's AdminClient lacks it).

One connection per broker (`sharedkit.kafka_wire`), logged in with the cluster's internal
credential, then DescribeLogDirs v1. Best effort: if a broker does
not answer, the size is unknown (None) and the rest of the topic view is still served.
"""

from __future__ import annotations

import logging
import struct

from kio.schema.describe_log_dirs.v1 import request as dld_req
from kio.schema.describe_log_dirs.v1 import response as dld_resp
from kio.schema.types import TopicName

from clusters.models import Cluster
from sharedkit.kafka_wire import internal_connection

logger = logging.getLogger(__name__)


def _broker_sizes(
    host: str, port: int, cluster: Cluster, topic: str, partitions: list[int]
) -> dict[int, int]:
    conn = internal_connection(cluster, host, port)
    try:
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
