"""`python manage.py up` from a fresh checkout with nothing configured: serves, works, stops clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (by walking /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def up_process(tmp_path):
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"}
    }
    env.update(KASTLE_VAR_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = (tmp_path / "up.log").open("w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "up",
            "--port",
            str(port),
            "--web-workers",
            "1",
            "--worker-concurrency",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.base_url = f"http://127.0.0.1:{port}"
    proc.log_path = tmp_path / "up.log"
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in descendants(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.wait()
    log.close()


def test_up_serves_the_platform_and_stops_without_orphans(up_process, tmp_path):
    log = lambda: up_process.log_path.read_text()  # noqa: E731
    wait_until(lambda: "Kastle is up" in log() or up_process.poll() is not None, timeout=90, message="up")
    assert up_process.poll() is None, log()
    assert f"Kastle is up: {up_process.base_url}/" in log()

    schema = requests.get(f"{up_process.base_url}/api/v1/schema/", timeout=10)
    assert schema.status_code == 200 and "openapi" in schema.text
    assert (tmp_path / "var" / "kastle.sqlite3").exists() and (tmp_path / "var" / "secret_key").exists()

    # The whole loop works embedded: REST -> SQLite -> filesystem queue -> worker.
    signup = requests.post(
        f"{up_process.base_url}/api/v1/signup",
        json={"email": "up@example.com", "password": "a long enough passphrase", "organization": "Up"},
        timeout=10,
    )
    assert signup.status_code == 201, signup.text
    headers = {"Authorization": f"Bearer {signup.json()['token']}"}
    # A Standard cluster on this one machine: 3 brokers on the one host, meeting in the embedded
    # etcd, with a warning that they share it.
    created = requests.post(
        f"{up_process.base_url}/api/v1/clusters",
        json={"name": "c1", "plan": "standard"},
        headers=headers,
        timeout=10,
    )
    assert created.status_code == 202, created.text
    cluster_id = created.json()["id"]
    url = f"{up_process.base_url}/api/v1/clusters/{cluster_id}"

    def running():
        body = requests.get(url, headers=headers, timeout=10).json()
        assert body["status"] != "FAILED", body
        return body if body["status"] == "RUNNING" else None

    cluster = wait_until(running, timeout=90, interval=0.5, message="the Standard cluster RUNNING")
    assert "host.local" in log()  # the worker consumes the local host's queue too
    assert "etcd      http://127.0.0.1:" in log() and "(embedded)" in log()
    assert oct((tmp_path / "var" / "etcd" / "root-password").stat().st_mode & 0o777) == "0o600"
    addresses = cluster["bootstrap_servers"].split(",")
    assert len(addresses) == 3 and len(set(addresses)) == 3
    assert {a.rsplit(":", 1)[0] for a in addresses} == {"127.0.0.1"}
    assert "share 1 host" in cluster["placement_warning"], cluster
    brokers = requests.get(f"{url}/brokers", headers=headers, timeout=10).json()["results"]
    assert [(b["node_id"], b["host"], b["status"]) for b in brokers] == [
        (1, "local", "online"),
        (2, "local", "online"),
        (3, "local", "online"),
    ]
    assert cluster["health"]["brokers_online"] == 3

    children = descendants(up_process.pid)
    commands = {p: Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0] for p in children if alive(p)}
    assert any(c.endswith(b"/etcd") for c in commands.values()), "the embedded etcd is one of up's children"
    assert len(children) >= 3  # web (+ its workers), worker (+ pool), beat
    started = time.monotonic()
    os.killpg(up_process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert up_process.wait(timeout=40) == 0, log()
    assert time.monotonic() - started < 30
    assert "Kastle stopped." in log()
    wait_until(lambda: not [p for p in children if alive(p)], timeout=10, message="children to exit")
