"""``brokerd`` command line.

    brokerd serve --data-dir DIR --listener PLAINTEXT://127.0.0.1:9092 [--listener ...]
                  [--credentials FILE] [--admin-listener HOST:PORT] [--advertised-host H]
                  [--node-id N] [--cluster-id ID] [--config FILE.toml] [--set key=value ...]
                  [--pidfile FILE] [--log-file FILE] [--tls-cert FILE --tls-key FILE]
                  [--coordination etcd://HOST:PORT[,..]/PREFIX --node-id N [--rack R]
                   [--coordination-user NAME --coordination-password-file FILE]]
    brokerd credentials set --file FILE --username NAME      (password on stdin)
    brokerd credentials delete --file FILE --username NAME
    brokerd settings                                          (list settings and defaults)

Errors are one line on stderr naming the problem and the fix; the exit status is non-zero.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import asyncio


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"brokerd: {message} (see '{self.prog} --help')\n")


def _die(message: str, status: int = 1) -> NoReturn:
    sys.stderr.write(f"brokerd: {message}\n")
    sys.stderr.flush()
    raise SystemExit(status)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="brokerd", description="Kastle's Kafka-protocol broker")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = True

    serve = sub.add_parser("serve", help="run the broker")
    serve.add_argument("--config", metavar="FILE", help="TOML file with settings (Kafka names)")
    serve.add_argument("--data-dir", metavar="DIR")
    serve.add_argument(
        "--listener",
        action="append",
        metavar="URL",
        default=None,
        help="PLAINTEXT://HOST:PORT, SASL_PLAINTEXT://HOST:PORT or SASL_SSL://HOST:PORT (repeatable)",
    )
    serve.add_argument("--credentials", metavar="FILE")
    serve.add_argument("--admin-listener", metavar="HOST:PORT")
    serve.add_argument("--advertised-host", metavar="HOST")
    serve.add_argument("--node-id", metavar="N")
    serve.add_argument("--cluster-id", metavar="ID")
    serve.add_argument("--pidfile", metavar="FILE")
    serve.add_argument("--log-file", metavar="FILE")
    serve.add_argument("--coordination", metavar="URL",
                       help="etcd://HOST:PORT[,HOST:PORT]/PREFIX: form a cluster with the brokers using it")
    serve.add_argument("--coordination-user", metavar="NAME", help="etcd user (when etcd has auth on)")
    serve.add_argument("--coordination-password-file", metavar="FILE", help="file holding its password")
    serve.add_argument("--rack", metavar="RACK", help="this broker's rack, for replica placement")
    serve.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain for SASL_SSL")
    serve.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting by its Kafka name (repeatable)",
    )

    creds = sub.add_parser("credentials", help="manage the SCRAM credentials file")
    csub = creds.add_subparsers(dest="action", parser_class=_Parser)
    csub.required = True
    for action in ("set", "delete"):
        p = csub.add_parser(action)
        p.add_argument("--file", required=True, metavar="FILE")
        p.add_argument("--username", required=True, metavar="NAME")

    sub.add_parser("settings", help="list settings, types and defaults")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "credentials":
        return _credentials(args)
    if args.command == "settings":
        from brokerd.settings import SETTINGS

        for s in SETTINGS.values():
            print(f"{s.name:40} {s.type:5} {s.default!r:>14}  {s.doc}")
        return 0
    return 2  # pragma: no cover


def _credentials(args: argparse.Namespace) -> int:
    from brokerd import credentials

    if not args.username or any(c in args.username for c in "\x00\n"):
        _die("--username must be a non-empty name without NUL or newline characters", 2)
    try:
        if args.action == "set":
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                _die('no password on stdin; pipe it in, e.g. echo "$SECRET" | brokerd credentials set ...', 2)
            credentials.set_user(args.file, args.username, password)
        else:
            if not credentials.delete_user(args.file, args.username):
                sys.stderr.write(
                    f"brokerd: user {args.username!r} was not in {args.file}; nothing to delete\n"
                )
    except credentials.CredentialsError as exc:
        _die(f"credentials file {args.file}: {exc}; fix or remove the file")
    except OSError as exc:
        _die(f"credentials file {args.file}: {exc.strerror}; check the path and permissions")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from brokerd.settings import Settings, SettingsError, load_toml, parse_set

    flags = {}
    for name, value in (
        ("data.dir", args.data_dir),
        ("listeners", args.listener),
        ("credentials.file", args.credentials),
        ("admin.listener", args.admin_listener),
        ("advertised.host", args.advertised_host),
        ("node.id", args.node_id),
        ("cluster.id", args.cluster_id),
        ("pid.file", args.pidfile),
        ("log.file", args.log_file),
        ("tls.cert.file", args.tls_cert),
        ("tls.key.file", args.tls_key),
        ("coordination", args.coordination),
        ("coordination.user", args.coordination_user),
        ("coordination.password.file", args.coordination_password_file),
        ("broker.rack", args.rack),
    ):
        if value is not None:
            flags[name] = value
    try:
        toml = load_toml(args.config) if args.config else {}
        config = Settings.resolve(toml=toml, sets=parse_set(args.set), flags=flags)
    except SettingsError as exc:
        _die(str(exc), 2)
    release_log, discard_log = _setup_logging(config)

    import asyncio

    from brokerd.broker import Broker, StartupError

    broker = Broker(config)
    broker.on_serving.append(release_log)
    # What start-up built (modules, kio's classes, configs, the logs' indexes) lives as long as
    # the process: kept out of the cyclic collector's walks, which under load otherwise scan it
    # again at every full collection.
    broker.on_serving.append(gc.freeze)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory(config["event.loop"])) as runner:
            runner.run(broker.run())
            if broker.stuck_tasks:
                # Leaving the runner would wait for them without end (it cancels and awaits
                # every task left); every part has stopped and the logs are closed, so the
                # process ends here.
                import logging

                logging.shutdown()
                os._exit(0)
    except StartupError as exc:
        discard_log()
        _die(str(exc))
    except Exception as exc:
        import logging

        logging.getLogger("brokerd").exception("brokerd failed")
        discard_log()
        _die(f"brokerd failed: {exc!r}; see the log for the traceback")
    except KeyboardInterrupt:  # pragma: no cover
        pass
    return 0


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop brokerd runs on: uvloop when installed (or demanded), else asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            _die("event.loop = uvloop but uvloop is not installed; pip install uvloop or use asyncio", 2)
        return None
    return uvloop.new_event_loop


def _setup_logging(config):
    """Configure brokerd's log. Returns (run once serving, run if the start fails).

    Without a log file, start-up log lines are held back until the broker serves, so a failed
    start prints exactly one line (the error) on stderr.
    """
    import logging
    import logging.handlers

    level = getattr(logging, str(config["log.level"]).upper(), None)
    if not isinstance(level, int):
        _die(
            f"log.level {config['log.level']!r} is not a logging level; use DEBUG, INFO, WARNING or ERROR", 2
        )
    path = config["log.file"]
    if path:
        try:
            handler: logging.Handler = logging.FileHandler(path)
        except OSError as exc:
            _die(f"cannot open log file {path}: {exc.strerror}; check the path and permissions")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.setLevel(level)
    if path:
        root.addHandler(handler)
        return (lambda: None), (lambda: None)
    held = logging.handlers.MemoryHandler(100_000, flushLevel=logging.CRITICAL + 1, target=handler)
    root.addHandler(held)

    def release() -> None:
        held.flush()
        root.removeHandler(held)
        root.addHandler(handler)

    def discard() -> None:
        held.buffer.clear()
        root.removeHandler(held)

    return release, discard


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
