"""The product walkthrough with `kastle` as a subprocess against the real platform: log in, create a
SASL_SSL cluster with --wait, topics, an API key with its client config, produce 100 lines with
keys and headers and consume them back as a group, reset the group (dry run, then --execute),
ACLs, service accounts, usage and costs, and delete. Every `-o json` output is compared with what
the REST API says; a secret scan of every run's output closes the module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml

from tests.cli.conftest import ROOT, Account, Cli
from tests.helpers import environ, wait_until

# e2e: the real stack; django_db: the test database must exist for the server and worker (the tests
# read nothing from it themselves: their view is the REST API, so a plain mark is enough).
pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

STATE: dict[str, Any] = {}  # what the journey made, for the tests after it (they run in file order)


def strip_volatile(obj: Any) -> Any:
    """Broker-served fields that move between two reads (last use, offsets of a live topic)."""
    if isinstance(obj, dict):
        return {k: strip_volatile(v) for k, v in obj.items() if k not in ("last_used_at", "updated_at")}
    if isinstance(obj, list):
        return [strip_volatile(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def logged_in(cli: Cli, account: Account) -> Cli:
    run = cli.run(
        "login", "--url", cli.url, "--email", account.email, "--password-stdin", input=account.password + "\n"
    )
    assert run.code == 0, run.err
    assert f"Logged in to {cli.url} as {account.email}" in run.err
    return cli


@pytest.fixture(scope="module")
def cluster(logged_in: Cli, account: Account) -> dict[str, Any]:
    t0 = time.monotonic()
    body = logged_in.json("cluster", "create", "journey", "--plan", "basic", "--wait", "--timeout", "90")
    STATE["provision_seconds"] = time.monotonic() - t0
    assert body["status"] == "RUNNING" and body["security_protocol"] == "SASL_SSL"
    return body


# --- login, whoami, context ----------------------------------------------------------------------------
def test_login_stores_a_token_in_a_private_file(logged_in: Cli, account: Account) -> None:
    config = logged_in.config()
    assert config["url"] == logged_in.url and config["email"] == account.email
    path = logged_in.config_dir / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(logged_in.config_dir.stat().st_mode) == 0o700
    # the token is a real one of this user: the REST API lists it under the CLI's name
    tokens = account.results("auth/tokens")
    assert config["token_id"] in {t["id"] for t in tokens}

    me = logged_in.json("whoami")
    assert me == account.get("me")
    table = logged_in.ok("whoami").out
    assert account.email in table and "owner" in table


def test_cluster_create_wait_then_list_and_describe(logged_in: Cli, account: Account, cluster) -> None:
    rest = account.get(f"clusters/{cluster['id']}")
    assert strip_volatile(cluster) == strip_volatile(rest)
    print(f"cluster create --wait: RUNNING after {STATE['provision_seconds']:.1f}s")
    # the first cluster became the current context
    assert logged_in.config()["current_cluster"] == cluster["id"]
    assert logged_in.json("context")["cluster"] == cluster["id"]

    listed = logged_in.json("cluster", "list")
    assert strip_volatile(listed) == strip_volatile(account.results("clusters"))
    assert strip_volatile(logged_in.json("cluster", "describe", cluster["id"])) == strip_volatile(rest)
    assert strip_volatile(logged_in.json("cluster", "describe")) == strip_volatile(rest)  # the context
    described = yaml.safe_load(logged_in.ok("cluster", "describe", "-o", "yaml").out)
    assert strip_volatile(described) == strip_volatile(rest)
    table = logged_in.ok("cluster", "list").out
    assert cluster["id"] in table and "RUNNING" in table and cluster["bootstrap_servers"] in table
    plans = logged_in.json("cluster", "plans")
    assert [p["name"] for p in plans] == [p["name"] for p in account.results("plans")]


def test_context_set(logged_in: Cli, cluster) -> None:
    assert logged_in.json("context", "set", cluster["id"])["cluster"] == cluster["id"]
    assert logged_in.config()["current_cluster"] == cluster["id"]


def test_cluster_restart_waits_and_grow_is_refused_with_the_reason(
    logged_in: Cli, account: Account, cluster
) -> None:
    restarted = logged_in.json("cluster", "restart", "--wait", "--timeout", "120")
    assert restarted["restart"]["state"] == "done" and restarted["restart"]["restarted"] == [1], restarted
    assert strip_volatile(restarted) == strip_volatile(account.get(f"clusters/{cluster['id']}"))
    refused = logged_in.run("cluster", "grow", "--count", "2")
    assert refused.code == 1 and "only Dedicated clusters grow" in refused.err, refused.err


def test_signup_login_with_a_token_and_another_tenant(
    logged_in: Cli, account: Account, cluster, tmp_path
) -> None:
    """A second user signs up with the CLI (own config dir): another tenant, so the first one's
    cluster is not found; a token login is only forgotten by logout, never revoked."""
    other = Cli(tmp_path, logged_in.url)
    email = "grace@cli.example"
    signed = other.json(
        "signup",
        "--url",
        other.url,
        "--email",
        email,
        "--organization",
        "Compilers",
        "--password-stdin",
        input="another long passphrase\n",
    )
    token = other.config()["token"]
    me = Account(email, "", token, other.url).get("me")
    assert signed == {"user": me["user"], "organization": me["organization"]}
    described = other.run("cluster", "describe", cluster["id"])
    assert described.code == 3 and cluster["id"] in described.err
    assert other.run("context", "set", cluster["id"]).code == 3

    # a token login: whoami works; logout forgets the token but does not revoke it
    (tmp_path / "token-user").mkdir()
    fresh = Cli(tmp_path / "token-user", logged_in.url)
    assert fresh.json("login", "--url", fresh.url, "--token", token) == me
    fresh.ok("logout")
    assert Account(email, "", token, other.url).rest("GET", "me").status_code == 200

    # KASTLE_URL naming another site: the stored token is never sent there
    elsewhere = logged_in.run("whoami", env={"KASTLE_URL": "http://localhost:1"})
    assert elsewhere.code == 4 and "not logged in to http://localhost:1" in elsewhere.err


def test_shell_completion(logged_in: Cli, cluster) -> None:
    script = logged_in.ok("--show-completion", "bash", env={"SHELL": "/bin/bash"}).out
    assert "_KASTLE_COMPLETE" in script or "complete_bash" in script
    env = {
        "_KASTLE_COMPLETE": "complete_bash",
        "COMP_WORDS": "kastle topic list --cluster ",
        "COMP_CWORD": "4",
    }
    assert cluster["id"] in logged_in.ok(env=env).out
    env = {"_KASTLE_COMPLETE": "complete_bash", "COMP_WORDS": "kastle consumer-gr", "COMP_CWORD": "1"}
    assert logged_in.ok(env=env).out.split() == ["consumer-group"]


# --- topics --------------------------------------------------------------------------------------------
def test_topic_create_list_describe_update_delete(logged_in: Cli, account: Account, cluster) -> None:
    base = f"clusters/{cluster['id']}/topics"
    created = logged_in.json(
        "topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=3600000"
    )
    assert created["name"] == "orders" and created["partitions_count"] == 3
    configs = {c["name"]: c["value"] for c in created["configs"]}
    assert configs["retention.ms"] == "3600000"
    assert created == account.get(f"{base}/orders")

    logged_in.ok("topic", "create", "scratch")
    listed = logged_in.json("topic", "list")
    assert listed == account.results(base)
    assert {"orders", "scratch"} <= {t["name"] for t in listed}
    assert logged_in.json("topic", "describe", "orders") == account.get(f"{base}/orders")
    table = logged_in.ok("topic", "describe", "orders").out
    assert "retention.ms=3600000" in table and "partition" in table

    updated = logged_in.json(
        "topic",
        "update",
        "orders",
        "--partitions",
        "4",
        "--config",
        "cleanup.policy=delete",
        "--reset-config",
        "retention.ms",
    )
    assert updated["partitions_count"] == 4
    assert updated == account.get(f"{base}/orders")
    by_name = {c["name"]: c for c in updated["configs"]}
    assert by_name["retention.ms"]["is_default"]

    deleted = logged_in.json("topic", "delete", "scratch", "--yes")
    assert deleted == {"cluster": cluster["id"], "topic": "scratch", "deleted": True}
    assert account.rest("GET", f"{base}/scratch").status_code == 404


# --- API keys and data ----------------------------------------------------------------------------------
def test_api_key_create_writes_config_and_brokers_accept_it(
    logged_in: Cli, account: Account, cluster, tmp_path_factory
) -> None:
    client_file = tmp_path_factory.mktemp("client") / "client.properties"
    t0 = time.monotonic()
    created = logged_in.json(
        "api-key", "create", "--description", "journey app", "--write-config", str(client_file)
    )
    STATE["key_seconds"] = time.monotonic() - t0
    key, secret = created["key"], created["secret"]
    STATE["key"], STATE["secret"] = key, secret
    listed = {k["key"]: k for k in account.results(f"clusters/{cluster['id']}/api-keys")}
    assert key in listed and listed[key]["description"] == "journey app"
    assert {k: created[k] for k in ("key", "description", "cluster", "expires_at", "owner", "scope")} == {
        k: listed[key][k] for k in ("key", "description", "cluster", "expires_at", "owner", "scope")
    }
    assert logged_in.config()["api_keys"][cluster["id"]] == {"api_key": key, "api_secret": secret}
    assert stat.S_IMODE(client_file.stat().st_mode) == 0o600
    print(f"api-key create: brokers accepted the key after {STATE['key_seconds']:.1f}s")

    # the written config works as is: kcat lists the cluster over SASL_SSL with it, right away
    props = dict(line.split("=", 1) for line in client_file.read_text().splitlines() if "=" in line)
    assert props["security.protocol"] == "SASL_SSL" and os.path.exists(props["ssl.ca.location"])
    listing = subprocess.run(
        ["kcat", "-F", str(client_file), "-L", "-J"], capture_output=True, text=True, timeout=30
    )
    assert listing.returncode == 0, listing.stderr
    assert "orders" in {t["topic"] for t in json.loads(listing.stdout)["topics"]}


def test_produce_and_consume_100_lines_with_keys_and_headers(logged_in: Cli, cluster) -> None:
    lines = "".join(f"k{i % 7}:value {i}\n" for i in range(100))
    produced = logged_in.json(
        "topic",
        "produce",
        "orders",
        "--key-separator",
        ":",
        "--header",
        "source=cli",
        "--header",
        "run=journey",
        input=lines,
    )
    assert produced == {"cluster": cluster["id"], "topic": "orders", "produced": 100}

    got = logged_in.run(
        "topic",
        "consume",
        "orders",
        "--group",
        "journey-readers",
        "--from-beginning",
        "--max",
        "100",
        "-o",
        "json",
    )
    assert got.code == 0, got.err
    records = [json.loads(line) for line in got.out.splitlines()]
    assert len(records) == 100
    assert sorted(r["value"] for r in records) == sorted(f"value {i}" for i in range(100))
    for record in records:
        assert record["key"] == f"k{int(record['value'].split()[1]) % 7}"
        assert record["headers"] == {"source": "cli", "run": "journey"}
        assert record["topic"] == "orders"
    # a key always lands on one partition (the default partitioner)
    assert all(
        len({r["partition"] for r in records if r["key"] == k}) == 1 for k in {r["key"] for r in records}
    )

    # the plain form prints what was asked for, one record per line
    plain = logged_in.ok(
        "topic",
        "consume",
        "orders",
        "--from-beginning",
        "--max",
        "3",
        "--print-key",
        "--print-headers",
        "--print-offset",
        "--partition",
        str(records[0]["partition"]),
    )
    first = plain.out.splitlines()[0].split("\t")
    assert first[0] == f"{records[0]['partition']}:0" and first[2] == "source=cli,run=journey"
    assert len(plain.out.splitlines()) == 3

    # start positions: an offset, and a time (the first record at or after it)
    p = records[0]["partition"]
    mine = sorted((r for r in records if r["partition"] == p), key=lambda r: r["offset"])
    at = logged_in.json("topic", "consume", "orders", "--partition", str(p), "--offset", "2", "--max", "1")
    assert (at["offset"], at["value"]) == (2, mine[2]["value"])
    since = logged_in.json(
        "topic",
        "consume",
        "orders",
        "--partition",
        str(p),
        "--timestamp",
        str(mine[-1]["timestamp"]),
        "--max",
        "1",
    )
    assert since["offset"] <= mine[-1]["offset"] and since["timestamp"] >= mine[-1]["timestamp"]


def test_consumer_groups_and_offset_reset(logged_in: Cli, account: Account, cluster) -> None:
    base = f"clusters/{cluster['id']}/consumer-groups"
    groups = logged_in.json("consumer-group", "list")
    assert groups == account.results(base)
    assert "journey-readers" in {g["group_id"] for g in groups}
    described = logged_in.json("consumer-group", "describe", "journey-readers")
    assert described == account.get(f"{base}/journey-readers")
    assert described["total_lag"] == 0
    assert sum(o["committed_offset"] for o in described["offsets"]) == 100

    dry = logged_in.json("consumer-group", "reset-offsets", "journey-readers", "--to", "earliest")
    assert dry["dry_run"] is True and all(o["new_offset"] == 0 for o in dry["offsets"])
    assert account.get(f"{base}/journey-readers")["total_lag"] == 0  # nothing changed
    table = logged_in.ok("consumer-group", "reset-offsets", "journey-readers", "--to", "earliest")
    assert "Dry run" in table.err

    done = logged_in.json(
        "consumer-group", "reset-offsets", "journey-readers", "--to", "earliest", "--execute"
    )
    assert done["dry_run"] is False
    assert account.get(f"{base}/journey-readers")["total_lag"] == 100

    # offsets set for a new group make it (as kafka-consumer-groups does); then delete it
    made = logged_in.json(
        "consumer-group",
        "reset-offsets",
        "scratch-group",
        "--topic",
        "orders",
        "--partition",
        "0",
        "--to",
        "offset",
        "--value",
        "1",
        "--execute",
    )
    assert [(o["partition"], o["new_offset"]) for o in made["offsets"]] == [(0, 1)]
    assert account.get(f"{base}/scratch-group")["offsets"][0]["committed_offset"] == 1
    assert logged_in.json("consumer-group", "delete", "scratch-group", "--yes")["deleted"] is True
    assert account.rest("GET", f"{base}/scratch-group").status_code == 404

    # JSON values (last: this adds a record): each line must be JSON; a bad line stops the run, naming it
    bad = logged_in.run("topic", "produce", "orders", "--value-format", "json", input='{"ok": 1}\nnot json\n')
    assert bad.code == 2 and "line 2 is not JSON" in bad.err and "the 1 records before it" in bad.err, bad.err


def test_config_client_for_each_language(logged_in: Cli, cluster) -> None:
    python_conf = logged_in.ok("config", "client", "--lang", "python", "--show-secret").out
    namespace: dict[str, Any] = {}
    exec(python_conf, namespace)  # the printed snippet is Python that runs as is
    conf = namespace["conf"]
    assert conf["sasl.username"] == STATE["key"] and conf["bootstrap.servers"] == cluster["bootstrap_servers"]
    assert conf["sasl.password"] == STATE["secret"]
    from confluent_kafka.admin import AdminClient

    assert "orders" in AdminClient(conf).list_topics(timeout=15).topics

    as_json = logged_in.json("config", "client", "--lang", "librdkafka")
    assert as_json["config"] == conf
    kcat_text = logged_in.ok("config", "client", "--lang", "kcat").out
    assert f"sasl.username={STATE['key']}" in kcat_text
    java = logged_in.json("config", "client", "--lang", "java")["config"]
    assert java["ssl.truststore.type"] == "PEM" and STATE["key"] in java["sasl.jaas.config"]


def test_config_client_hides_the_secret_unless_asked(logged_in: Cli, tmp_path) -> None:
    for lang in ("python", "java"):  # java: the secret sits inside the JAAS line
        shown = logged_in.ok("config", "client", "--lang", lang)
        assert STATE["secret"] not in shown.out and "<api-secret: see --write or --show-secret>" in shown.out
        assert "--write FILE" in shown.err and STATE["secret"] not in shown.err

    # --write: the usable config goes to the file (0600), nothing to stdout
    written = tmp_path / "client.properties"
    run = logged_in.ok("config", "client", "--lang", "kcat", "--write", str(written))
    assert run.out == "" and str(written) in run.err and "0600" in run.err
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    props = dict(line.split("=", 1) for line in written.read_text().splitlines() if "=" in line)
    assert props["sasl.username"] == STATE["key"] and props["sasl.password"] == STATE["secret"]
    listed = subprocess.run(
        ["kcat", "-F", str(written), "-L", "-t", "orders", "-m", "15"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert listed.returncode == 0 and 'topic "orders"' in listed.stdout, listed.stderr

    # CI jobs sharing a home fetch the cluster's CA at once: each writes a temporary file of its own
    shutil.rmtree(logged_in.config_dir / "ca")
    with ThreadPoolExecutor(4) as pool:
        runs = list(
            pool.map(lambda _: logged_in.run("config", "client", "--lang", "kcat", "-o", "json"), range(4))
        )
    assert [r.code for r in runs] == [0] * 4, [r.err for r in runs]
    assert os.path.exists(runs[0].json()["config"]["ssl.ca.location"])

    # a file that cannot be written: one line naming it, no traceback
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    bad = logged_in.run("config", "client", "--lang", "kcat", "--write", str(blocked / "client.properties"))
    assert bad.code == 1 and f"cannot write {blocked / 'client.properties'}" in bad.err, bad.err
    assert "Traceback" not in bad.err


def test_api_key_list_rotate_revoke(logged_in: Cli, account: Account, cluster) -> None:
    base = f"clusters/{cluster['id']}/api-keys"
    assert strip_volatile(logged_in.json("api-key", "list")) == strip_volatile(account.results(base))
    scoped = logged_in.json(
        "api-key",
        "create",
        "--scope-prefix",
        "orders",
        "--access",
        "consume",
        "--expires-in",
        "30d",
    )
    assert scoped["scope"] == {"topic_prefix": "orders", "access": "consume"}
    assert scoped["expires_at"] is not None
    # the scoped key reads its topics (given on the command line: it is now also the stored key)
    read = logged_in.run(
        "topic",
        "consume",
        "orders",
        "--from-beginning",
        "--max",
        "5",
        "-o",
        "json",
        "--api-key",
        scoped["key"],
        "--api-secret",
        scoped["secret"],
    )
    assert read.code == 0 and len(read.out.splitlines()) == 5, read.err
    refused = logged_in.run(
        "topic",
        "produce",
        "orders",
        "--api-key",
        scoped["key"],
        "--api-secret",
        scoped["secret"],
        input="not allowed\n",
    )
    assert refused.code == 1 and "may not use topic orders" in refused.err, refused.err
    described = logged_in.json("api-key", "describe", scoped["key"])
    assert strip_volatile(described) == strip_volatile(account.get(f"{base}/{scoped['key']}"))

    rotated = logged_in.json("api-key", "rotate", scoped["key"], "--overlap", "0s")
    assert rotated["rotated_from"] == scoped["key"] and rotated["key"] != scoped["key"]
    rest = account.get(f"{base}/{rotated['key']}")
    assert {k: rotated[k] for k in ("key", "cluster", "owner", "scope", "expires_at")} == {
        k: rest[k] for k in ("key", "cluster", "owner", "scope", "expires_at")
    }
    assert rest["rotated_from"] == scoped["key"]
    assert logged_in.config()["api_keys"][cluster["id"]]["api_key"] == rotated["key"]
    STATE["secrets"] = [scoped["secret"], rotated["secret"]]
    revoked = logged_in.json("api-key", "revoke", rotated["key"], "--yes")
    assert revoked == {"cluster": cluster["id"], "key": rotated["key"], "revoked": True}
    assert account.rest("GET", f"{base}/{rotated['key']}").status_code == 404
    assert cluster["id"] not in logged_in.config()["api_keys"]  # the stored key was the revoked one


# --- ACLs, service accounts, usage, costs ----------------------------------------------------------------
def test_service_accounts_and_acls(logged_in: Cli, account: Account, cluster) -> None:
    sa = logged_in.json("service-account", "create", "billing-app", "--description", "bills")
    assert sa == account.get(f"service-accounts/{sa['id']}")
    assert logged_in.json("service-account", "list") == account.results("service-accounts")
    renamed = logged_in.json("service-account", "update", sa["id"], "--name", "billing")
    assert renamed["name"] == "billing" and renamed == logged_in.json("service-account", "describe", sa["id"])

    base = f"clusters/{cluster['id']}/acls"
    created = logged_in.json(
        "acl",
        "create",
        "--principal",
        STATE["key"],
        "--operation",
        "read",
        "--resource-type",
        "topic",
        "--resource-name",
        "orders",
    )
    assert len(created) == 1 and created[0]["operation"] == "READ"
    assert created[0]["principal"] == f"User:{STATE['key']}"
    assert logged_in.json("acl", "list") == account.results(base)
    mine = logged_in.json("acl", "list", "--principal", STATE["key"])
    assert created[0]["id"] in {a["id"] for a in mine}
    assert logged_in.json("acl", "delete", created[0]["id"], "--yes")["deleted"] is True
    assert created[0]["id"] not in {a["id"] for a in account.results(base)}

    logged_in.ok(
        "acl",
        "create",
        "--principal",
        STATE["key"],
        "--operation",
        "write",
        "--resource-type",
        "topic",
        "--resource-name",
        "ord",
        "--pattern-type",
        "prefixed",
    )
    matched = logged_in.json(
        "acl",
        "delete",
        "--principal",
        STATE["key"],
        "--resource-name",
        "ord",
        "--pattern-type",
        "prefixed",
        "--yes",
    )
    assert [a["operation"] for a in matched["deleted"]] == ["WRITE"]

    assert logged_in.json("service-account", "delete", sa["id"], "--yes")["deleted"] is True
    assert account.rest("GET", f"service-accounts/{sa['id']}").status_code == 404


def test_usage_and_costs(logged_in: Cli, account: Account, cluster) -> None:
    usage = logged_in.json("usage", "--cluster", cluster["id"], "--group-by", "day")
    assert usage == account.results("usage", cluster=cluster["id"], group_by="day")
    costs = logged_in.json("costs", "--group-by", "cluster")
    assert costs == account.results("billing/costs", group_by="cluster")
    logged_in.ok("costs")
    logged_in.ok("usage")


# --- bad input, for every command ---------------------------------------------------------------------
def _one_line_error(code: int, out: str, err: str, args: list[str]) -> str:
    where = f"kastle {' '.join(args)}"
    assert "Traceback" not in err, f"{where}: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kastle: "), f"{where}: not one error line: {err!r}"
    assert out == "", f"{where}: stdout is not empty on error: {out!r}"
    return lines[0]


def test_bad_input_for_every_command(logged_in: Cli, account: Account, cluster, tmp_path, free_port) -> None:
    from tests.cli.badinput import (
        BAD_VALUES,
        COMMANDS,
        MISSING_OK,
        OBJECTS,
        PUBLIC,
        fill,
        invoke,
    )

    real = {
        "cluster": cluster["id"],
        "topic": "orders",
        "key": STATE["key"],
        "group": "journey-readers",
        "acl": "acl-0000",
        "sa": "sa-0000",
    }
    missing = {
        "topic": "no-such-topic",
        "key": "NOSUCHKEY0000000",
        "group": "no-such-group",
        "acl": "acl-nosuch",
        "sa": "sa-nosuch",
    }
    down = f"http://127.0.0.1:{free_port()}"
    seen = 0

    def check(args: list[str], expected: int, word: str, **env: str | None) -> None:
        nonlocal seen
        with environ(XDG_CONFIG_HOME=str(tmp_path), **env):
            code, out, err = invoke(args)
        line = _one_line_error(code, out, err, args)
        assert code == expected, f"kastle {' '.join(args)}: exit {code}, not {expected}: {line}"
        assert word in line, f"kastle {' '.join(args)}: {line!r} does not name {word!r}"
        seen += 1

    for template in COMMANDS:
        # the platform is down: 5, naming the URL
        check(fill(template, **real), 5, down, KASTLE_URL=down, KASTLE_TOKEN="x")
        # a wrong token: 4 (the plan list is public)
        args = fill(template, **real)
        if tuple(template[:2]) not in PUBLIC:
            check(args, 4, "kastle login", KASTLE_URL=account.url, KASTLE_TOKEN="kst_wrong")
        # an unknown cluster: 3, naming it
        if "{cluster}" in template:
            args = fill(template, **{**real, "cluster": "lkc-nosuch"})
            check(args, 3, "lkc-nosuch", KASTLE_URL=account.url, KASTLE_TOKEN=account.token)
        # an unknown topic, key, group, ACL or service account on the real cluster: 3, naming it
        for placeholder in OBJECTS:
            if placeholder in template:
                expected, word = MISSING_OK.get(tuple(template[:2]), (3, missing[placeholder.strip("{}")]))
                args = fill(template, **{**real, **missing})
                check(args, expected, word, KASTLE_URL=account.url, KASTLE_TOKEN=account.token)
        # a flag that does not exist: 2, naming it
        check(
            [*fill(template, **real), "--no-such-flag"],
            2,
            "--no-such-flag",
            KASTLE_URL=account.url,
            KASTLE_TOKEN=account.token,
        )
        # no cluster at all (no --cluster, no context): 2, saying how to give one
        if "{cluster}" in template and "--cluster" in template and template[0] != "usage":  # usage: all
            args = [a for a in fill(template, **real) if a not in ("--cluster", cluster["id"])]
            check(args, 2, "--cluster", KASTLE_URL=account.url, KASTLE_TOKEN=account.token)

    for template, expected, word in BAD_VALUES:
        check(fill(template, **real), expected, word, KASTLE_URL=account.url, KASTLE_TOKEN=account.token)
    # not logged in at all
    check(["cluster", "list"], 4, "kastle login", KASTLE_URL=account.url, KASTLE_TOKEN=None)
    check(["whoami"], 4, "kastle login --url", KASTLE_URL=None, KASTLE_TOKEN=None)
    print(f"{seen} bad-input runs, each one line on stderr with the expected exit code")

    # nothing changed on the way: the cluster, its topic, key and group are all still there
    assert account.get(f"clusters/{cluster['id']}")["status"] == "RUNNING"
    assert account.get(f"clusters/{cluster['id']}/topics/orders")["partitions_count"] == 4
    assert account.get(f"clusters/{cluster['id']}/api-keys/{STATE['key']}")["status"] == "ACTIVE"
    assert not [c for c in account.results("clusters") if c["name"] == "never"]
    assert not [a for a in account.results("service-accounts") if a["name"] == "never"]


def test_bad_input_as_a_process(logged_in: Cli, account: Account, cluster, free_port) -> None:
    """The same errors from the real console process: exit code, one line, nothing on stdout."""
    down = f"http://127.0.0.1:{free_port()}"
    cases = [
        (["topic", "list"], {"KASTLE_URL": down, "KASTLE_TOKEN": "kst_any"}, 5),
        (["topic", "list"], {"KASTLE_TOKEN": "kst_wrong"}, 4),
        (["topic", "describe", "orders", "--cluster", "lkc-nosuch"], {}, 3),
        (["topic", "describe", "no-such-topic"], {}, 3),
        (["topic", "create", "x", "--partitions", "many"], {}, 2),
        (["topic", "produce", "orders", "--key-separator", ":"], {}, 2),  # the line has no separator
    ]
    for args, env, expected in cases:
        run = logged_in.run(*args, env=env, input="no separator here\n")
        _one_line_error(run.code, run.out, run.err, list(args))
        assert run.code == expected, (args, run.code, run.err)


# --- Ctrl-C ----------------------------------------------------------------------------------------------
def _interrupt(cli: Cli, *args: str, ready) -> tuple[int, str, str]:
    """Start `kastle ARGS`, wait until `ready(proc)` says it is mid-way, then press Ctrl-C (SIGINT)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kastle", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli.env(),
        cwd=cli.home,
    )
    try:
        wait_until(lambda: ready(proc) or proc.poll() is not None, timeout=30, message=f"kastle {args}")
        assert proc.poll() is None, f"kastle {args} ended before Ctrl-C: {proc.communicate()}"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


def test_ctrl_c_stops_consume_and_wait_cleanly(logged_in: Cli, account: Account, cluster, platform) -> None:
    key = logged_in.json("api-key", "create", "--description", "ctrl-c")
    STATE.setdefault("secrets", []).append(key["secret"])
    code, _out, err = _interrupt(
        logged_in,
        "topic",
        "consume",
        "orders",
        "--from-beginning",
        ready=lambda p: "value" in p.stdout.readline(),
    )
    assert code == 0, err
    assert "Traceback" not in err and "Consumed" in err

    def created(_proc) -> bool:
        return any(c["name"] == "interrupted" for c in account.results("clusters"))

    # The worker is paused (SIGSTOP), so the cluster stays PROVISIONING while --wait waits on it.
    platform.kill("worker", signal.SIGSTOP)
    try:
        code, _out, err = _interrupt(
            logged_in, "cluster", "create", "interrupted", "--plan", "basic", "--wait", ready=created
        )
    finally:
        platform.kill("worker", signal.SIGCONT)
    assert code == 130, err
    assert "Traceback" not in err and "Stopped waiting" in err
    leftover = [c for c in account.results("clusters") if c["name"] == "interrupted"]
    assert len(leftover) == 1  # the cluster carries on: waiting was interrupted, not the creation
    logged_in.ok("cluster", "delete", leftover[0]["id"], "--yes")


# --- the end: delete, then the secret scan ----------------------------------------------------------------
def test_cluster_delete_wait(logged_in: Cli, account: Account, cluster) -> None:
    deleted = logged_in.json("cluster", "delete", cluster["id"], "--yes", "--wait", "--timeout", "60")
    assert deleted["status"] == "DELETED"
    assert strip_volatile(deleted) == strip_volatile(account.get(f"clusters/{cluster['id']}"))
    assert cluster["id"] not in {c["id"] for c in logged_in.json("cluster", "list")}
    assert logged_in.config()["current_cluster"] is None


def test_no_secret_in_table_output_or_logs(logged_in: Cli, account: Account, platform) -> None:
    """Every table run and every stderr (with --verbose too) is free of tokens, passwords and key
    secrets; the JSON of `api-key create` is the one place a secret is shown."""
    verbose = logged_in.run("--verbose", "whoami")
    assert "GET /api/v1/me -> 200" in verbose.err
    config = logged_in.config()
    found = {
        "the CLI's REST token": config["token"],
        "the sign-up token": account.token,
        "the password": account.password,
        "the API key secret": STATE["secret"],
        **{f"secret {i}": s for i, s in enumerate(STATE.get("secrets", []))},
    }
    runs = logged_in.transcript
    assert len(runs) > 40
    for run in runs:
        table = "-o" not in run.args or "table" in run.args
        printed_config = "--show-secret" in run.args  # the secret itself, by request
        for name, value in found.items():
            assert value not in run.err, f"{name} appears in the stderr of kastle {' '.join(run.args)}"
            if table and not printed_config:
                assert value not in run.out, (
                    f"{name} appears in the table output of kastle {' '.join(run.args)}"
                )
    web_log = platform.log("web")
    assert len(web_log) > 100
    for name, value in found.items():
        assert value not in web_log, f"{name} appears in the web server's log"
    assert stat.S_IMODE((logged_in.config_dir / "config.json").stat().st_mode) == 0o600

    logged_in.ok("logout")
    after = logged_in.config()
    assert after["token"] is None and after["api_keys"] == {}
    tokens = {t["id"] for t in account.results("auth/tokens")}
    assert config["token_id"] not in tokens  # the token `kastle login` made was revoked
    assert logged_in.run("whoami").code == 4


def test_console_script_is_declared() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["kastle"] == "kastle.app:main"
