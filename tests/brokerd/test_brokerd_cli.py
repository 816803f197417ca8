"""The public command line: serve flags, TOML config, --set, errors, credentials."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient

from tests.brokerd.conftest import REPO, Broker


def run(*args: str, stdin: str | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "brokerd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--data-dir", "D", "--listener", "PLAINTEXT://127.0.0.1:0", "--bogus"],
            "unrecognized arguments: --bogus",
        ),
        (["--data-dir", "D", "--listener", "127.0.0.1:9092"], "PROTOCOL://HOST:PORT"),
        (["--data-dir", "D", "--listener", "SSL://127.0.0.1:9092"], "not supported"),
        (["--data-dir", "D", "--listener", "PLAINTEXT://127.0.0.1:99999"], "out of range"),
        (["--data-dir", "D"], "--listener"),
        (["--listener", "PLAINTEXT://127.0.0.1:0"], "--data-dir"),
        (["--config", "/nonexistent/brokerd.toml"], "does not exist"),
        (
            ["--data-dir", "D", "--listener", "PLAINTEXT://127.0.0.1:0", "--set", "no.such=1"],
            "unknown setting",
        ),
        (
            ["--data-dir", "D", "--listener", "PLAINTEXT://127.0.0.1:0", "--set", "num.partitions=x"],
            "num.partitions",
        ),
        (["--data-dir", "D", "--listener", "SASL_PLAINTEXT://127.0.0.1:0"], "credentials"),
        (
            ["--data-dir", "D", "--listener", "PLAINTEXT://127.0.0.1:0", "--admin-listener", "nope"],
            "HOST:PORT",
        ),
    ],
)
def test_bad_invocations_print_one_line(tmp_path, args: list[str], expected: str) -> None:
    args = [str(tmp_path / "d") if a == "D" else a for a in args]
    line = one_line_error(run("serve", *args))
    assert expected in line


def test_port_in_use_and_locked_data_dir(broker, tmp_path) -> None:
    listener = f"PLAINTEXT://127.0.0.1:{broker.port}"
    line = one_line_error(run("serve", "--data-dir", str(tmp_path / "d"), "--listener", listener))
    assert "already in use" in line
    line = one_line_error(
        run("serve", "--data-dir", str(broker.data_dir), "--listener", "PLAINTEXT://127.0.0.1:0")
    )
    assert "in use by another brokerd" in line


def test_unreadable_or_invalid_files(tmp_path) -> None:
    bad = tmp_path / "creds.json"
    bad.write_text("{not json")
    line = one_line_error(
        run(
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--listener",
            "SASL_PLAINTEXT://127.0.0.1:0",
            "--credentials",
            str(bad),
        )
    )
    assert "creds.json" in line
    toml = tmp_path / "b.toml"
    toml.write_text("num.partitions = [")
    assert "not valid TOML" in one_line_error(run("serve", "--config", str(toml)))
    line = one_line_error(
        run(
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--listener",
            "PLAINTEXT://127.0.0.1:0",
            "--log-file",
            str(tmp_path / "no" / "such" / "dir" / "x.log"),
        )
    )
    assert "log file" in line


def test_credentials_commands(tmp_path) -> None:
    path = tmp_path / "creds.json"
    assert (
        run("credentials", "set", "--file", str(path), "--username", "ak1", stdin="s3cret-pass\n").returncode
        == 0
    )
    assert (
        run("credentials", "set", "--file", str(path), "--username", "ak2", stdin="other\n").returncode == 0
    )
    text = path.read_text()
    assert "s3cret-pass" not in text
    users = json.loads(text)["users"]
    assert set(users) == {"ak1", "ak2"} and set(users["ak1"]) == {"SCRAM-SHA-256", "SCRAM-SHA-512"}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert run("credentials", "delete", "--file", str(path), "--username", "ak2").returncode == 0
    assert set(json.loads(path.read_text())["users"]) == {"ak1"}
    assert "no password" in one_line_error(
        run("credentials", "set", "--file", str(path), "--username", "x", stdin="")
    )


def test_toml_config_flags_override_and_pidfile(tmp_path) -> None:
    b = Broker(
        tmp_path,
        config_toml="num.partitions = 3\n[auto.create.topics]\nenable = true\n",
        settings={"num.partitions": 2},
        extra_args=["--pidfile", str(tmp_path / "b.pid")],
    )
    b.start()
    try:
        assert (tmp_path / "b.pid").read_text().strip() == str(b.pid)
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics("auto", timeout=10)
        assert len(md.topics["auto"].partitions) == 2  # --set beats the file
    finally:
        assert b.stop() == 0
    assert not (tmp_path / "b.pid").exists()
    assert "brokerd stopped" in b.log_text()


@pytest.mark.parametrize(
    ("choice", "loop"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_event_loop_setting(tmp_path, choice: str, loop: str) -> None:
    """uvloop by default (it is a dependency); event.loop = asyncio keeps the standard loop."""
    b = Broker(tmp_path, settings={"event.loop": choice})
    b.start()
    try:
        AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
    finally:
        assert b.stop() == 0
    assert f"{loop} loop)" in b.log_text()


def test_bad_event_loop_setting(tmp_path) -> None:
    args = ["--data-dir", str(tmp_path / "d"), "--listener", "PLAINTEXT://127.0.0.1:0",
            "--set", "event.loop=tokio"]
    assert "event.loop must be auto, uvloop or asyncio" in one_line_error(run("serve", *args))


def test_healthz_and_unknown_admin_paths(broker) -> None:
    import urllib.error
    import urllib.request

    with urllib.request.urlopen(f"{broker.admin_url}/healthz", timeout=5) as resp:
        assert resp.status == 200
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{broker.admin_url}/nope", timeout=5)
    info.value.close()
    assert info.value.code == 404
    # the admin listener is not the Kafka port
    with socket.create_connection(("127.0.0.1", broker.ports["admin"]), timeout=5):
        pass
