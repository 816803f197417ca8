"""Output: tables (rich) for people, JSON or YAML for scripts; everything else goes to stderr.

With `-o json`, stdout carries only the JSON: the REST object, or for list commands the list of
every page's results. Notes, spinners and progress always go to stderr.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOpt = Annotated[
    Format,
    typer.Option(
        "--output",
        "-o",
        envvar="KASTLE_OUTPUT",
        help="table for people; json (stdout carries only the JSON) or yaml for scripts.",
        case_sensitive=False,
    ),
]

#: A column: (header, key in the REST object, or a function of the object).
Column = tuple[str, str | Callable[[dict[str, Any]], Any]]

_stdout: Console | None = None
_stderr: Console | None = None


def stdout() -> Console:
    global _stdout
    if _stdout is None:
        from rich.console import Console

        terminal = sys.stdout.isatty()
        _stdout = Console(highlight=False, soft_wrap=not terminal, width=None if terminal else 200)
    return _stdout


def stderr() -> Console:
    global _stderr
    if _stderr is None:
        from rich.console import Console

        _stderr = Console(stderr=True, highlight=False)
    return _stderr


def note(message: str) -> None:
    """A message for the person at the terminal (stderr, so stdout stays clean)."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def spinner(message: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr (drawn only on a terminal); yields a function to change its text."""
    console = stderr()
    if not console.is_terminal:
        yield lambda text: None
        return
    with console.status(message) as status:
        yield lambda text: status.update(text)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def _get(obj: dict[str, Any], key: str | Callable[[dict[str, Any]], Any]) -> Any:
    return key(obj) if callable(key) else obj.get(key)


def emit(
    data: Any,
    output: Format,
    *,
    columns: Sequence[Column] | None = None,
    title: str | None = None,
    empty: str = "Nothing to show.",
) -> None:
    """Print `data` (an object or a list of objects) in the chosen format."""
    if output is Format.json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    if output is Format.yaml:
        import yaml

        sys.stdout.write(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False))
        return
    from rich.table import Table

    if isinstance(data, list):
        if not data:
            note(empty)
            return
        cols = columns or [(k, k) for k in data[0]]
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for header, _ in cols:
            table.add_column(header, overflow="fold")
        for row in data:
            table.add_row(*(_cell(_get(row, key)) for _, key in cols))
        stdout().print(table)
        return
    if isinstance(data, dict):
        cols = columns or [(k, k) for k in data]
        table = Table(show_header=False, title=title, title_justify="left", show_edge=False, pad_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for header, key in cols:
            table.add_row(header, _cell(_get(data, key)))
        stdout().print(table)
        return
    stdout().print(str(data), markup=False)


def done(output: Format, message: str, result: dict[str, Any]) -> None:
    """The end of a command with no REST object to show (a 204): a note, or `result` for scripts."""
    if output is Format.table:
        note(message)
    else:
        emit(result, output)
