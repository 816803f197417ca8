"""Clusters settings, from Django settings when set there, else from the environment.

KASTLE_HOST_TIMEOUT   seconds without a heartbeat after which a host's worker counts as gone
                      (default 30): no new brokers are placed there, and its clusters show as
                      degraded
"""

from __future__ import annotations

from sharedkit.envconf import number


def host_timeout() -> float:
    return number("KASTLE_HOST_TIMEOUT", 30.0, what="a number of seconds")
