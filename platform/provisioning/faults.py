"""Test-only fault points: hold a provisioning step at a named moment, so a chaos test can kill
brokerd or the worker exactly there instead of relying on timing luck.

Inert unless the environment sets KASTLE_FAULT_DIR (the chaos tests set it for their worker;
nothing else does). A test *arms* a point by creating `<dir>/<point>.arm`, optionally holding a
cluster's public id (then only that cluster's pass stops there). The first pass through an armed
point claims it (one-shot), writes `<point>.reached` ("<cluster id> <pid>"), and waits until
`<point>.release` exists or KASTLE_FAULT_TIMEOUT seconds (default 120) have passed.

Points (all in provisioning.services):
  provision.broker_spawned     brokerd was just started, not yet healthy; the cluster is PROVISIONING
  deprovision.broker_stopped   brokerd was stopped; its data and port leases are still there (DELETING)
  credentials.before_write     the cluster lock is held, the new credentials file not yet written
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)

POINTS = ("provision.broker_spawned", "deprovision.broker_stopped", "credentials.before_write")


def point(name: str, cluster_id: str = "") -> None:
    root = os.environ.get("KASTLE_FAULT_DIR")
    if not root:
        return
    directory = Path(root)
    arm = directory / f"{name}.arm"
    try:
        target = arm.read_text().strip()
    except FileNotFoundError:
        return
    if target and target != cluster_id:
        return
    claimed = directory / f"{name}.claimed.{os.getpid()}"
    try:
        os.rename(arm, claimed)  # atomic: exactly one pass claims an armed point
    except FileNotFoundError:
        return
    claimed.write_text(f"{cluster_id} {os.getpid()}\n")
    os.rename(claimed, directory / f"{name}.reached")
    logger.warning("fault point %s reached (cluster %s, pid %s): holding", name, cluster_id, os.getpid())
    release = directory / f"{name}.release"
    deadline = time.monotonic() + float(os.environ.get("KASTLE_FAULT_TIMEOUT") or 120)
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    logger.warning("fault point %s released", name)
