"""Helpers shared by tests (conftest fixtures wrap them): polling, free ports, queue inspection."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings


def wait_until(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, message: str = ""
) -> Any:
    """Poll until `predicate()` is truthy; return its value, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


@contextlib.contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """Set (or, with None, remove) environment variables for the block; restore them afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def queued_tasks(client: redis.Redis, queue: str | None = None) -> list[dict[str, Any]]:
    """The messages waiting in a Celery queue (a Redis list), decoded to {task, args, kwargs, id}."""
    queue = queue or settings.CELERY_DEFAULT_QUEUE
    out = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        headers = message.get("headers", {})
        body = json.loads(_decode_body(message))
        args, kwargs = (
            (body[0], body[1]) if isinstance(body, list) else (body.get("args"), body.get("kwargs"))
        )
        out.append({"task": headers.get("task"), "id": headers.get("id"), "args": args, "kwargs": kwargs})
    return list(reversed(out))  # kombu LPUSHes: oldest last


def _decode_body(message: dict[str, Any]) -> str:
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        return base64.b64decode(body).decode()
    return body
