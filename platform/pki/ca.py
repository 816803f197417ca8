"""X.509 for the platform CA and broker certificates, with the `cryptography` package. No Django.

Keys are ECDSA P-256 (fast to generate, supported by librdkafka, Python's ssl and Java). A
broker certificate names every address clients use in its subject alternative names: DNS
names as dNSName, IP addresses (127.0.0.x included) as iPAddress, because librdkafka, kcat,
kafka-python and aiokafka all verify the host name against them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALID_DAYS = 3650
BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock differences between hosts


@dataclass(frozen=True)
class Issued:
    key_pem: str
    cert_pem: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def generate_ca(common_name: str = "Kastle platform CA", *, valid_days: int = CA_VALID_DAYS) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kastle"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(_key_pem(key), _cert_pem(cert), cert.serial_number, cert.not_valid_before_utc,
                  cert.not_valid_after_utc)


def _san(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in hosts:
        host = host.strip().strip("[]")
        if not host or host in seen:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_server_certificate(
    ca_key_pem: str | bytes,
    ca_cert_pem: str | bytes,
    *,
    common_name: str,
    hosts: Iterable[str],
    valid_days: int,
    valid_seconds: int | None = None,
) -> Issued:
    """A TLS server certificate for `hosts` (names and IPs), signed by the CA."""
    ca_key = serialization.load_pem_private_key(_bytes(ca_key_pem), password=None)
    ca_cert = x509.load_pem_x509_certificate(_bytes(ca_cert_pem))
    sans = _san(hosts)
    if not sans:
        raise ValueError("a server certificate needs at least one host name or address")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    lifetime = dt.timedelta(seconds=valid_seconds) if valid_seconds else dt.timedelta(days=valid_days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kastle"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + lifetime, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=False, crl_sign=False, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(_key_pem(key), _cert_pem(cert), cert.serial_number, cert.not_valid_before_utc,
                  cert.not_valid_after_utc)


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def load_certificate(pem: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(_bytes(pem))


def certificate_hosts(pem: str | bytes) -> set[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    cert = load_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    }


def key_matches(key_pem: str | bytes, cert_pem: str | bytes) -> bool:
    key = serialization.load_pem_private_key(_bytes(key_pem), password=None)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.DER, pub) == load_certificate(
        cert_pem
    ).public_key().public_bytes(serialization.Encoding.DER, pub)
