"""Where host work goes: each broker host's worker consumes its own queue, `host.<name>`.

Tasks are sent by name, so a sender needs neither the task module nor the app that defines it.
"""

from __future__ import annotations

from typing import Any

from celery import current_app


def send_lifecycle(task_name: str, cluster_id: int) -> None:
    """Queue a lifecycle task of a cluster; CELERY_TASK_ROUTES puts it on the control queue."""
    current_app.send_task(task_name, args=(cluster_id,))


def host_queue(host_name: str) -> str:
    return f"host.{host_name}"


def send_to_host(task_name: str, host_name: str, *args: Any, **options: Any) -> None:
    """Send a host task to `host.<name>`; the host's name is its first argument."""
    current_app.send_task(task_name, args=(host_name, *args), queue=host_queue(host_name), **options)


def host_reconcile_send(host_name: str, expires: float = 30) -> None:
    """Have a host converge its brokers to the database now (its `provisioning.host_reconcile`),
    not at its next beat; a request older than `expires` seconds is dropped (a beat follows)."""
    send_to_host("provisioning.host_reconcile", host_name, expires=expires)
