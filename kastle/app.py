"""The `kastle` command: sub-commands, `--verbose`, and the one place errors become exit codes."""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from kastle import errors
from kastle.commands import (
    acls,
    api_keys,
    auth,
    billing,
    client_config,
    clusters,
    groups,
    service_accounts,
    topics,
)

app = typer.Typer(
    name="kastle",
    help="Kastle from the command line: clusters, topics, API keys, data, groups, ACLs and costs.\n\n"
    "Set KASTLE_URL (the site root) and KASTLE_TOKEN to use it without `kastle login` (CI).",
    epilog=errors.EXIT_CODES_HELP,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            envvar="KASTLE_VERBOSE",
            help="Log each REST request (method, path, status, time) to stderr; never tokens or secrets.",
        ),
    ] = False,
) -> None:
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("kastle: %(message)s"))
        logger = logging.getLogger("kastle")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


auth.register(app)
app.add_typer(clusters.app, name="cluster")
app.add_typer(topics.app, name="topic")
app.add_typer(api_keys.app, name="api-key")
app.add_typer(groups.app, name="consumer-group")
app.add_typer(acls.app, name="acl")
app.add_typer(service_accounts.app, name="service-account")
billing.register(app)
app.add_typer(client_config.app, name="config")


def _click_error(name: str) -> type[Exception]:
    """click's exception classes, whether Typer vendors click (0.2x) or depends on it."""
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == name)


ClickUsageError = _click_error("UsageError")
ClickException = _click_error("ClickException")


def _fail(message: str, code: int) -> int:
    sys.stdout.flush()
    print(f"kastle: {message}", file=sys.stderr)
    return code


def run(argv: list[str] | None = None) -> int:
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="kastle", standalone_mode=False)
    except errors.CliError as exc:
        return _fail(exc.message, exc.exit_code)
    except ClickUsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "kastle"
        return _fail(f"{exc.format_message()} (see `{where} --help`)", errors.USAGE)
    except ClickException as exc:
        return _fail(exc.format_message(), exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        return _fail("interrupted", errors.INTERRUPTED)
    return result if isinstance(result, int) else errors.OK


def main() -> None:
    try:
        code = run()
        sys.stdout.flush()
    except KeyboardInterrupt:
        code = errors.INTERRUPTED
    except BrokenPipeError:  # `kastle topic consume ... | head`: the reader left, that is fine
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = errors.OK
    sys.exit(code)
