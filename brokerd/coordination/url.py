"""The ``--coordination`` URL: ``etcd://HOST:PORT[,HOST:PORT...]/PREFIX``.

The prefix is the cluster's own key space in etcd (it may contain ``/``). It is normalised
to start and end with ``/`` so that ``/kastle/a`` never covers ``/kastle/ab``: an etcd
role granted on one cluster's prefix range must not reach a neighbour whose name merely
starts the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-_]+):(?P<port>[0-9]{1,5})$")
_PREFIX_CHARS = re.compile(r"^[A-Za-z0-9._\-/]+$")


class CoordinationUrlError(ValueError):
    """The URL cannot be used; the message says what is wrong and how to write it."""


@dataclass(frozen=True)
class CoordinationUrl:
    endpoints: tuple[tuple[str, int], ...]
    prefix: str  # starts and ends with "/"

    def __str__(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.endpoints)
        return f"etcd://{hosts}{self.prefix.rstrip('/')}"


def normalise_prefix(prefix: str) -> str:
    stripped = prefix.strip("/")
    if not stripped:
        raise CoordinationUrlError(
            "the coordination prefix is empty: name the cluster's key space, "
            "e.g. etcd://127.0.0.1:2379/kastle/clusters/c1"
        )
    if not _PREFIX_CHARS.match(stripped) or "//" in stripped:
        raise CoordinationUrlError(
            f"the coordination prefix {prefix!r} may only hold letters, digits, '.', '_', '-' "
            "and single '/' separators"
        )
    return f"/{stripped}/"


def parse_coordination_url(text: str) -> CoordinationUrl:
    example = "etcd://127.0.0.1:2379[,127.0.0.2:2379]/PREFIX"
    scheme, sep, rest = text.partition("://")
    if not sep or scheme != "etcd":
        raise CoordinationUrlError(f"--coordination {text!r}: expected {example}")
    hosts, slash, prefix = rest.partition("/")
    if not slash:
        raise CoordinationUrlError(
            f"--coordination {text!r} has no key prefix after the hosts: expected {example}"
        )
    endpoints: list[tuple[str, int]] = []
    for item in hosts.split(","):
        match = _HOST_PORT.match(item.strip())
        if not match or not 0 < int(match["port"]) < 65536:
            raise CoordinationUrlError(
                f"--coordination {text!r}: {item!r} is not HOST:PORT (a port from 1 to 65535)"
            )
        endpoints.append((match["host"].strip("[]"), int(match["port"])))
    return CoordinationUrl(tuple(endpoints), normalise_prefix(prefix))
