"""The platform CA and the clusters' broker certificates: issue, renew, write to the hosts.

- The CA is generated once, on first use, under ``KASTLE_DATA_DIR/pki/`` (``ca.key`` 0600 in a
  0700 directory, ``ca.pem``). Control-plane workers that issue certificates need that
  directory (one machine, or a shared volume); the web process never reads it — tenants get
  the CA bundle from the certificate row in the database.
- A SASL_SSL cluster gets one certificate (``BrokerCertificate``) whose SANs name the address of
  every host its brokers run on; it is issued by the provisioning control step after placement,
  re-issued when the hosts change, and renewed by reconciliation when less than
  ``KASTLE_TLS_RENEW_DAYS`` (30) of its ``KASTLE_TLS_CERT_DAYS`` (90) remain.
- Each host's worker writes ``clusters/<id>/tls/{ca.pem,broker.key,broker.crt}``; brokerd
  watches those files and serves a renewed certificate to new handshakes without dropping any
  connection.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from clusters.models import Broker, Cluster, ClusterStatus
from sharedkit.envconf import data_root, number
from sharedkit.files import file_lock, write_if_changed

from . import ca
from .models import BrokerCertificate, CertificateAuthority

logger = logging.getLogger(__name__)

SASL_SSL = "SASL_SSL"
SASL_PLAINTEXT = "SASL_PLAINTEXT"
SECURITY_PROTOCOLS = (SASL_SSL, SASL_PLAINTEXT)
CA_FILENAME = "kastle-ca.pem"  # what tenants save the bundle as (portal downloads, client snippets)


# --- settings ------------------------------------------------------------------------------------
def cert_lifetime() -> dt.timedelta:
    return dt.timedelta(days=number("KASTLE_TLS_CERT_DAYS", 90))


def renew_before() -> dt.timedelta:
    return dt.timedelta(days=number("KASTLE_TLS_RENEW_DAYS", 30))


def ca_dir() -> Path:
    return data_root() / "pki"


# --- the CA --------------------------------------------------------------------------------------
class CaUnavailable(Exception):
    """This worker cannot sign: the CA's key is not in its KASTLE_DATA_DIR/pki (a retry may help)."""


def authority() -> tuple[str, str]:
    """(key PEM, certificate PEM) of the platform CA, generated once.

    The certificate in the database says which CA is current; the key lives only in
    ``KASTLE_DATA_DIR/pki/ca.key``. Generation is serialised by a file lock (processes sharing the
    directory) and the singleton row (processes that do not): a second CA is never started.
    """
    directory = ca_dir()
    key_path, cert_path = directory / "ca.key", directory / "ca.pem"
    row = CertificateAuthority.objects.first()
    if row is not None:
        return _local_key(row.cert_pem, key_path), row.cert_pem
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    with file_lock(directory / ".lock"):
        if not (key_path.exists() and cert_path.exists()):
            issued = ca.generate_ca("Kastle platform CA")
            write_if_changed(cert_path, issued.cert_pem, mode=0o644)
            write_if_changed(key_path, issued.key_pem, mode=0o600)  # last: its presence means it is complete
            logger.info("generated the platform CA in %s (serial %x)", directory, issued.serial)
        cert_pem = cert_path.read_text()
        try:
            with transaction.atomic():
                row = CertificateAuthority.objects.create(cert_pem=cert_pem)
        except IntegrityError:  # another worker (with another directory) registered its CA first
            row = CertificateAuthority.objects.get()
    return _local_key(row.cert_pem, key_path), row.cert_pem


def _local_key(cert_pem: str, key_path: Path) -> str:
    try:
        key_pem = key_path.read_text()
    except FileNotFoundError:
        key_pem = ""
    if not key_pem or not ca.key_matches(key_pem, cert_pem):
        raise CaUnavailable(
            f"this worker has not got the platform CA's key ({key_path}); control-plane workers must "
            "share KASTLE_DATA_DIR/pki"
        )
    return key_pem


# --- broker key at rest --------------------------------------------------------------------------
def _fernet() -> Fernet:
    raw = salted_hmac("kastle.pki.broker-key", "v1", algorithm="sha256").digest()
    return Fernet(base64.urlsafe_b64encode(raw))


def _encrypt(key_pem: str) -> str:
    return _fernet().encrypt(key_pem.encode()).decode()


def broker_key_pem(cert: BrokerCertificate) -> str | None:
    try:
        return _fernet().decrypt(cert.key_encrypted.encode()).decode()
    except (InvalidToken, ValueError):
        return None  # SECRET_KEY changed: the certificate is re-issued


# --- broker certificates -------------------------------------------------------------------------
def cluster_hosts(cluster: Cluster) -> list[str]:
    """The addresses clients reach the cluster's brokers at (every broker's host)."""
    return sorted(
        {
            address
            for address in cluster.brokers.filter(host__isnull=False).values_list("host__address", flat=True)
            if address
        }
    )


def _renewal_reason(cert: BrokerCertificate | None, hosts: list[str], ca_pem: str, now) -> str | None:
    if cert is None:
        return "new cluster"
    if not set(hosts) <= set(cert.hosts):
        return f"hosts changed to {', '.join(hosts)}"
    if cert.ca_pem.strip() != ca_pem.strip():
        return "the platform CA changed"
    if cert.not_after - now < renew_before():
        return f"expires {cert.not_after:%Y-%m-%d %H:%M}"
    if broker_key_pem(cert) is None:
        return "its key cannot be decrypted (SECRET_KEY changed)"
    return None


def certificate_ensure(*, cluster: Cluster, force: bool = False) -> BrokerCertificate | None:
    """Issue or renew the cluster's broker certificate when needed; None for SASL_PLAINTEXT clusters."""
    if cluster.security_protocol != SASL_SSL:
        return None
    hosts = cluster_hosts(cluster)
    if not hosts:
        return BrokerCertificate.objects.filter(cluster=cluster).first()
    ca_key, ca_pem = authority()
    now = timezone.now()
    current = BrokerCertificate.objects.filter(cluster=cluster).first()
    reason = "forced" if force else _renewal_reason(current, hosts, ca_pem, now)
    if reason is None:
        return current
    lifetime = cert_lifetime()
    issued = ca.issue_server_certificate(
        ca_key,
        ca_pem,
        common_name=f"{cluster.public_id}.kastle",
        hosts=hosts,
        valid_days=max(1, lifetime.days),
        valid_seconds=int(lifetime.total_seconds()),
    )
    fields = {
        "cert_pem": issued.cert_pem,
        "key_encrypted": _encrypt(issued.key_pem),
        "ca_pem": ca_pem,
        "serial": format(issued.serial, "x")[:40],
        "hosts": hosts,
        "not_before": issued.not_before,
        "not_after": issued.not_after,
    }
    with transaction.atomic():
        cert, _ = BrokerCertificate.objects.update_or_create(cluster=cluster, defaults=fields)
    logger.info(
        "issued TLS certificate %s for %s (%s; valid until %s)",
        cert.serial, cluster.public_id, reason, issued.not_after.isoformat(timespec="seconds"),
    )
    return cert


def certificates_renew_due(*, now: dt.datetime | None = None) -> list[str]:
    """Reconciliation (control): re-issue the certificates of RUNNING SASL_SSL clusters that expire
    within the renewal window, whose brokers moved to hosts the certificate does not name, or that
    have none. A few queries per pass, whatever the number of clusters.

    Hosts pick the new files up at their next reconciliation (credentials sync) and brokerd at
    its next poll of the files. Returns the public ids re-issued.
    """
    now = now or timezone.now()
    live = Cluster.objects.filter(status=ClusterStatus.RUNNING, security_protocol=SASL_SSL)
    certs = {c.cluster_id: c for c in BrokerCertificate.objects.filter(cluster__in=live)}
    hosts: dict[int, set[str]] = {}
    for cluster_id, address in Broker.objects.filter(cluster__in=live, host__isnull=False).values_list(
        "cluster_id", "host__address"
    ):
        hosts.setdefault(cluster_id, set()).add(address)
    soon = now + renew_before()
    due = [
        cid
        for cid, addresses in hosts.items()
        if cid not in certs or certs[cid].not_after < soon or not addresses <= set(certs[cid].hosts)
    ]
    renewed = []
    for cluster in Cluster.objects.filter(pk__in=due):
        try:
            certificate_ensure(cluster=cluster)
            renewed.append(cluster.public_id)
        except Exception:
            logger.exception("could not renew the TLS certificate of %s", cluster.public_id)
    return renewed


# --- files on a host -----------------------------------------------------------------------------
def tls_dir(cluster_dir: Path) -> Path:
    return cluster_dir / "tls"


def tls_files(cluster_dir: Path) -> dict[str, Path]:
    d = tls_dir(cluster_dir)
    return {"ca": d / "ca.pem", "cert": d / "broker.crt", "key": d / "broker.key"}


def broker_tls_write(*, cluster: Cluster, cluster_dir: Path) -> bool:
    """Write the cluster's CA, broker key and certificate on this host (call with the cluster lock).

    The key is written before the certificate; brokerd loads only a matching pair. Returns True if
    anything changed.
    """
    if cluster.security_protocol != SASL_SSL:
        return False
    cert = BrokerCertificate.objects.filter(cluster=cluster).first()
    if cert is None:
        return False
    key_pem = broker_key_pem(cert)
    if key_pem is None:
        logger.warning("TLS key of %s cannot be decrypted; waiting for reconciliation to re-issue", cluster)
        return False
    files = tls_files(cluster_dir)
    files["key"].parent.mkdir(parents=True, exist_ok=True)
    os.chmod(files["key"].parent, 0o700)
    changed = write_if_changed(files["ca"], cert.ca_pem, mode=0o644)
    changed |= write_if_changed(files["key"], key_pem, mode=0o600)
    changed |= write_if_changed(files["cert"], cert.cert_pem, mode=0o644)
    return changed
