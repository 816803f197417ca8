"""kastle config client --lang python|java|kcat|librdkafka: a ready client config for a cluster.

It uses the cluster's stored API key (or --api-key/--api-secret) and, on a SASL_SSL cluster, the CA
bundle saved beside the config file, so what it prints works as is. It includes the secret: it
is a credentials file, to be kept like one.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any

import typer

from kastle import kafka
from kastle.output import Format, OutputOpt, emit, stdout
from kastle.session import ClusterOpt, Session

from .data import ApiKeyOpt, ApiSecretOpt

app = typer.Typer(help="Client configuration.", no_args_is_help=True)


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
    output: OutputOpt = Format.table,
) -> None:
    """Print a ready client config for the cluster and its stored API key (secret included)."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    described = session.cluster(cluster_id)  # an unknown cluster is "not found", before any key question
    key, secret = kafka.credentials(session, cluster_id, api_key, api_secret)
    conf = kafka.client_settings(session, described, key, secret)
    if output is Format.table:
        stdout().file.write(render(lang, conf))
        return
    settings = java_properties(conf) if lang is Lang.java else conf
    emit({"cluster": cluster_id, "lang": lang.value, "config": settings}, output)
