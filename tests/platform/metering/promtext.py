"""Prometheus text as brokerd's /metrics renders it (for tests and bench/metering_bench.py)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text(
    counters: Mapping[tuple[str, str], tuple[int, int, int, int]],
    stored: Mapping[tuple[str, int], int] | None = None,
    *,
    noise: bool = True,
) -> str:
    """counters: {(principal, topic): (bytes_in, records_in, bytes_out, records_out)};
    stored: {(topic, partition): bytes}. `noise` adds the other series brokerd serves."""
    lines: list[str] = []
    names = ("kastle_bytes_in", "kastle_records_in", "kastle_bytes_out", "kastle_records_out")
    for slot, name in enumerate(names):
        lines += [f"# HELP {name}_total usage", f"# TYPE {name}_total counter"]
        for (principal, topic), values in counters.items():
            labels = f'principal="{_esc(principal)}",topic="{_esc(topic)}"'
            lines.append(f"{name}_total{{{labels}}} {float(values[slot])}")
    lines += ["# HELP kastle_principal_last_seen_timestamp_seconds x", "# TYPE x gauge"]
    for principal in sorted({p for p, _ in counters}):
        lines.append(f'kastle_principal_last_seen_timestamp_seconds{{principal="{principal}"}} 1.7e+09')
    per_topic: dict[str, int] = {}
    lines += ["# HELP kastle_partition_bytes_stored x", "# TYPE kastle_partition_bytes_stored gauge"]
    for (topic, partition), nbytes in (stored or {}).items():
        lines.append(
            f'kastle_partition_bytes_stored{{partition="{partition}",topic="{topic}"}} {float(nbytes)}'
        )
        per_topic[topic] = per_topic.get(topic, 0) + 1
    lines += ["# HELP kastle_partitions x", "# TYPE kastle_partitions gauge"]
    for topic, n in sorted(per_topic.items()):
        lines.append(f'kastle_partitions{{topic="{topic}"}} {float(n)}')
    lines.append(f"kastle_partitions_total_count {float(sum(per_topic.values()))}")
    if noise:
        for api in ("Produce", "Fetch", "Metadata", "ApiVersions", "SaslAuthenticate", "OffsetCommit"):
            lines.append(f'kastle_requests_total{{api="{api}",error="NONE"}} 1234.0')
            for le in ("0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                       "1.0", "2.5", "5.0", "10.0", "+Inf"):  # fmt: skip
                lines.append(f'kastle_request_latency_seconds_bucket{{api="{api}",le="{le}"}} 1000.0')
            lines.append(f'kastle_request_latency_seconds_count{{api="{api}"}} 1000.0')
            lines.append(f'kastle_request_latency_seconds_sum{{api="{api}"}} 1.5')
        lines.append('kastle_connections{listener="SASL_PLAINTEXT"} 3.0')
        lines.append('kastle_connections_opened_total{listener="SASL_PLAINTEXT"} 17.0')
    return "\n".join(lines) + "\n"


class MetricsEndpoint:
    """A tiny HTTP server on its own loopback port answering GET /metrics with `self.text`,
    standing in for a brokerd admin listener (point a Broker's admin_port at `self.port`)."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = endpoint.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
