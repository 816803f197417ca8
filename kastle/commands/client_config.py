"""kastle config client --lang python|java|kcat|librdkafka: a ready client config for a cluster.

It uses the cluster's stored API key (or --api-key/--api-secret) and, on a SASL_SSL cluster, the CA
bundle saved beside the config file. A terminal is no place for a secret (scroll-back, screen
sharing, CI logs), so the text printed by default carries a placeholder for it; the usable config,
secret included, goes to a file with --write FILE (0600), to stdout with --show-secret, or to
scripts with -o json|yaml.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from kastle import kafka
from kastle.config import write_private
from kastle.output import Format, OutputOpt, emit, note, stdout
from kastle.session import ClusterOpt, Session

from .data import ApiKeyOpt, ApiSecretOpt

app = typer.Typer(help="Client configuration.", no_args_is_help=True)

#: What the table output shows in place of the key's secret.
SECRET_PLACEHOLDER = "<api-secret: see --write or --show-secret>"


class Lang(enum.StrEnum):
    python = "python"
    java = "java"
    kcat = "kcat"
    librdkafka = "librdkafka"


def java_properties(conf: dict[str, Any]) -> dict[str, Any]:
    """The Java client's names for the same settings (JAAS for SASL, a PEM trust store)."""
    out = {k: conf[k] for k in ("bootstrap.servers", "security.protocol", "sasl.mechanism")}
    user, password = conf["sasl.username"], conf["sasl.password"]
    out["sasl.jaas.config"] = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{user}" password="{password}";'
    )
    if "ssl.ca.location" in conf:
        out["ssl.truststore.type"] = "PEM"
        out["ssl.truststore.location"] = conf["ssl.ca.location"]
    return out


def render(lang: Lang, conf: dict[str, Any]) -> str:
    if lang is Lang.python:
        body = json.dumps(conf, indent=4)
        return f"# confluent-kafka: Producer(conf), Consumer({{**conf, 'group.id': ...}})\nconf = {body}\n"
    if lang is Lang.java:
        return "# client.properties for the Java client\n" + kafka.properties(java_properties(conf))
    if lang is Lang.kcat:
        return "# kcat -F this-file -L\n" + kafka.properties(conf)
    return "# librdkafka properties\n" + kafka.properties(conf)


@app.command()
def client(
    lang: Annotated[
        Lang, typer.Option("--lang", "-l", help="python, java, kcat or librdkafka.", case_sensitive=False)
    ],
    cluster: ClusterOpt = None,
    api_key: ApiKeyOpt = None,
    api_secret: ApiSecretOpt = None,
    write: Annotated[
        Path | None,
        typer.Option(
            "--write", "-w", help="Write the config, secret included, to this file (0600).", dir_okay=False
        ),
    ] = None,
    show_secret: Annotated[
        bool, typer.Option("--show-secret", help="Print the secret itself instead of a placeholder.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Print a ready client config for the cluster and its stored API key (the secret hidden unless asked)."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    described = session.cluster(cluster_id)  # an unknown cluster is "not found", before any key question
    key, secret = kafka.credentials(session, cluster_id, api_key, api_secret)
    conf = kafka.client_settings(session, described, key, secret)
    if write is not None:
        write_private(write, render(lang, conf))
        note(f"Wrote the {lang.value} client config for cluster {cluster_id} to {write} (mode 0600).")
    if output is not Format.table:  # scripts asked for the data itself
        settings = java_properties(conf) if lang is Lang.java else conf
        emit({"cluster": cluster_id, "lang": lang.value, "config": settings}, output)
        return
    if write is not None and not show_secret:
        return
    if not show_secret:
        conf = {**conf, "sasl.password": SECRET_PLACEHOLDER}
        note("The secret is hidden: --write FILE writes a usable config (0600), --show-secret prints it.")
    stdout().file.write(render(lang, conf))
