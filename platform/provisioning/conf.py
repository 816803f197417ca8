"""Provisioning settings, from Django settings when set there, else from the environment.

Per host (each broker host's worker reads its own):
  KASTLE_HOST_NAME        this host's name; its worker consumes `host.<name>` (default `local`)
  KASTLE_HOST_ADDRESS     the address brokers listen on and advertise (default 127.0.0.1)
  KASTLE_HOST_PORTS       the port range brokers may use, `MIN-MAX` (default 20000-20999)
  KASTLE_HOST_CAPACITY    how many brokers the host may run (default 200)
  KASTLE_DATA_DIR         data root (`sharedkit.envconf.data_root`); a host keeps its brokers
                          under hosts/<name>/
Timings (seconds): KASTLE_HEARTBEAT_INTERVAL (5), KASTLE_RECONCILE_INTERVAL (3),
KASTLE_BROKER_START_TIMEOUT (30), KASTLE_OPERATION_LEASE (20), KASTLE_UNCLAIMED_GRACE (15),
KASTLE_PORT_RELEASE_WAIT (15), KASTLE_RESTART_IN_SYNC_TIMEOUT (300), KASTLE_REPLACE_AFTER (300),
KASTLE_SCALE_START_TIMEOUT (120).
KASTLE_REASSIGN_BATCH (4): how many partitions a growing cluster moves at a time;
KASTLE_REASSIGN_THROTTLE (52428800): bytes/s a new replica copies at most while it moves (0: off).
KASTLE_BROKERD_FORKSERVER (on): brokers are forked from a fork server with brokerd imported
(`supervisor.forkserver_enabled`, read from the environment: `0` starts each brokerd afresh).
Host liveness (KASTLE_HOST_TIMEOUT) is the clusters app's (`clusters/conf.py`).
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from sharedkit.envconf import data_root, integer, number, setting


def _seconds(name: str, default: float) -> float:
    return number(name, default, what="a number of seconds")


def host_name() -> str:
    return setting("KASTLE_HOST_NAME", "local")


def host_address() -> str:
    return setting("KASTLE_HOST_ADDRESS", "127.0.0.1")


def host_ports() -> tuple[int, int]:
    raw = setting("KASTLE_HOST_PORTS", "20000-20999")
    low, sep, high = raw.partition("-")
    try:
        port_min, port_max = int(low), int(high if sep else low)
    except ValueError as exc:
        raise ImproperlyConfigured(f"KASTLE_HOST_PORTS must look like 20000-20999, not {raw!r}") from exc
    if not (1 <= port_min <= port_max <= 65535) or port_max - port_min < 1:
        raise ImproperlyConfigured(
            f"KASTLE_HOST_PORTS {raw!r} must be a range of at least 2 ports within 1-65535"
        )
    return port_min, port_max


def host_capacity() -> int:
    return max(0, integer("KASTLE_HOST_CAPACITY", 200))


def host_root(name: str | None = None) -> Path:
    return data_root() / "hosts" / (name or host_name())


def heartbeat_interval() -> float:
    return _seconds("KASTLE_HEARTBEAT_INTERVAL", 5.0)


def reconcile_interval() -> float:
    return _seconds("KASTLE_RECONCILE_INTERVAL", 3.0)


def broker_start_timeout() -> float:
    return _seconds("KASTLE_BROKER_START_TIMEOUT", 30.0)


def port_release_wait() -> float:
    """How long a restart waits for a broker's own ports to be released before it leases others.

    Clients, replicas and the bootstrap list know a broker by its address, so a restart keeps it
    while its previous process (killed a moment ago) is still releasing its sockets."""
    return _seconds("KASTLE_PORT_RELEASE_WAIT", 15.0)


def restart_in_sync_timeout() -> float:
    """How long a rolling restart waits for a restarted broker's partitions to be back in full ISR
    before it stops, failed, leaving the remaining brokers alone."""
    return _seconds("KASTLE_RESTART_IN_SYNC_TIMEOUT", 300.0)


def replace_after() -> float:
    """How long a host's heartbeat may be missing before the brokers it ran for replicated clusters
    are started again on other hosts (with the same node ids, from empty data directories). Never
    sooner than the host counts as gone (KASTLE_HOST_TIMEOUT): a host that merely restarts its
    worker keeps its brokers and their data."""
    return _seconds("KASTLE_REPLACE_AFTER", 300.0)


def reassign_batch() -> int:
    """How many partitions a growing cluster moves at once: each move copies a partition's log to
    a new broker over the network, so fewer at a time leave more of the brokers' bandwidth to
    clients (on top of the byte rate, `reassign_throttle`)."""
    return max(1, integer("KASTLE_REASSIGN_BATCH", 4))


def reassign_throttle() -> int:
    """Bytes per second the brokers receiving a growing cluster's moved replicas fetch those at most
    (follower.replication.throttled.rate on them, only for the replicas moving); 0 turns it off."""
    return max(0, integer("KASTLE_REASSIGN_THROTTLE", 50 * 1024 * 1024))


def scale_start_timeout() -> float:
    """How long a growing cluster waits for its new brokers to start and register."""
    return _seconds("KASTLE_SCALE_START_TIMEOUT", 120.0)


def operation_lease() -> float:
    """How long a lifecycle task's lease lasts unrenewed; an expired lease means its worker died."""
    return _seconds("KASTLE_OPERATION_LEASE", 20.0)


def unclaimed_grace() -> float:
    """A PROVISIONING/DELETING cluster nobody leased for this long is driven again by reconciliation."""
    return _seconds("KASTLE_UNCLAIMED_GRACE", 15.0)


#: How often reconciliation drives a cluster again before giving up with FAILED.
MAX_REDRIVES = 3
