"""signup, login, logout, whoami and context: who you are, where, and which cluster."""

from __future__ import annotations

import socket
import sys
from typing import Annotated

import typer

from kastle.api import Api, seg
from kastle.config import Config, normalize_url
from kastle.errors import AuthError, CliError, UsageError
from kastle.output import Format, OutputOpt, emit, note
from kastle.session import Session, complete_cluster

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", envvar="KASTLE_URL", help="The site root, e.g. http://127.0.0.1:8000."),
]
EmailOpt = Annotated[str | None, typer.Option("--email", help="Your email (prompted if missing).")]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
]

ME_COLUMNS = [
    ("email", lambda me: me["user"]["email"]),
    ("user", lambda me: me["user"]["id"]),
    ("organization", lambda me: f"{me['organization']['name']} ({me['organization']['id']})"),
    ("role", "role"),
]


def register(app: typer.Typer) -> None:
    app.command()(signup)
    app.command()(login)
    app.command()(logout)
    app.command()(whoami)
    app.add_typer(context_app, name="context")


def _password(password_stdin: bool, *, confirm: bool = False) -> str:
    if password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UsageError("--password-stdin: stdin had no password on its first line")
        return line
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password on: pass --password-stdin (or --token)")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=confirm, err=True)


def _site(url: str | None, config: Config) -> str:
    site = normalize_url(url) if url else config.site_url
    if not site:
        raise UsageError("which Kastle? pass --url http://HOST:PORT (the site root) or set KASTLE_URL")
    return site


def _token_name() -> str:
    return f"kastle CLI on {socket.gethostname()}"[:100]


def signup(
    email: Annotated[str, typer.Option("--email", help="Your email.")],
    organization: Annotated[str, typer.Option("--organization", help="Your organization's name.")],
    url: UrlOpt = None,
    password_stdin: PasswordStdinOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Create an organization with you as its owner, and log in to it."""
    config = Config.load()
    site = _site(url, config)
    password = _password(password_stdin, confirm=True)
    body = Api(site).post("signup", {"email": email, "password": password, "organization": organization})
    _remember(config, site, body["token"], token_id=None, email=email)
    emit({"user": body["user"], "organization": body["organization"]}, output)
    note(f"Signed up and logged in to {site} as {email}.")


def login(
    url: UrlOpt = None,
    token: Annotated[
        str | None,
        typer.Option("--token", help="A REST token (from the portal or POST /api/v1/auth/tokens)."),
    ] = None,
    email: EmailOpt = None,
    password_stdin: PasswordStdinOpt = False,
    organization: Annotated[
        str | None, typer.Option("--organization", help="Organization id, if you belong to several.")
    ] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Log in with your email and password (a new REST token is made), or with a token."""
    config = Config.load()
    site = _site(url, config)
    if token and (email or password_stdin):
        raise UsageError("give either --token or --email/--password-stdin, not both")
    token_id = None
    if not token:
        if not email:
            if not sys.stdin.isatty():
                raise UsageError("no terminal to ask on: pass --email and --password-stdin, or --token")
            email = typer.prompt("Email", err=True)
        body = {"email": email, "password": _password(password_stdin), "name": _token_name()}
        if organization:
            body["organization"] = organization
        try:
            created = Api(site).post("auth/tokens", body)
        except AuthError:
            raise AuthError(f"{site} refused the login: wrong email or password") from None
        token, token_id = created["token"], created["id"]
    me = Api(site, token).get("me")
    _remember(config, site, token, token_id=token_id, email=me["user"]["email"])
    emit(me, output, columns=ME_COLUMNS)
    note(f"Logged in to {site} as {me['user']['email']}.")


def _remember(config: Config, site: str, token: str, *, token_id: str | None, email: str) -> None:
    if config.url and config.url != site:  # another site: its clusters and keys mean nothing here
        config.current_cluster = None
        config.api_keys = {}
    config.url, config.token, config.token_id, config.email = site, token, token_id, email
    config.save()


def logout() -> None:
    """Forget the token and stored API keys (a token `kastle login` made is revoked too)."""
    config = Config.load()
    if not config.token:
        note("Not logged in.")
        return
    if config.token_id and config.url:
        try:
            Api(config.url, config.token).delete(f"auth/tokens/{seg(config.token_id)}")
        except CliError as exc:
            note(f"The token could not be revoked on the server ({exc.message}); forgetting it here.")
    config.token = config.token_id = config.email = None
    config.api_keys = {}
    config.current_cluster = None
    config.save()
    note(f"Logged out of {config.url}.")


def whoami(output: OutputOpt = Format.table) -> None:
    """Your user, organization and role on this site."""
    session = Session()
    me = session.api.get("me")
    emit(me, output, columns=[*ME_COLUMNS, ("site", lambda _: session.api.url)])


context_app = typer.Typer(
    help="Show or set the current cluster (the default for --cluster).", invoke_without_command=True
)


@context_app.callback()
def context(ctx: typer.Context, output: OutputOpt = Format.table) -> None:
    """Show the current context: site, user and cluster."""
    if ctx.invoked_subcommand is not None:
        return
    config = Config.load()
    emit(
        {"url": config.site_url, "email": config.email, "cluster": config.current_cluster},
        output,
    )


@context_app.command("set")
def context_set(
    cluster_id: Annotated[
        str, typer.Argument(metavar="ID", help="The cluster's id (lkc-…).", autocompletion=complete_cluster)
    ],
    output: OutputOpt = Format.table,
) -> None:
    """Make a cluster the current one (it must exist in your organization)."""
    session = Session()
    cluster = session.cluster(cluster_id)
    session.config.current_cluster = cluster["id"]
    session.config.save()
    emit({"url": session.config.site_url, "email": session.config.email, "cluster": cluster["id"]}, output)
    note(f"Current cluster: {cluster['id']} ({cluster['name']}).")
