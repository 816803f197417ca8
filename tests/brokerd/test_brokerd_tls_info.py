"""brokerd.tls.certificate_info: serial and expiry read from DER, without the ``cryptography`` package.

A SASL_SSL broker must not import ``cryptography`` (~9 MB of idle RSS); these tests hold
certificate_info to cryptography's reading of the same certificates.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from brokerd.tls import certificate_info
from pki import ca

REPO = Path(__file__).resolve().parents[2]


def _expected(pem: bytes) -> dict:
    cert = x509.load_pem_x509_certificate(pem)
    return {"serial": format(cert.serial_number, "x"), "not_after": cert.not_valid_after_utc.timestamp()}


def _self_signed(key, serial: int, not_after: dt.datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "x" * 60)] * 4)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(dt.datetime(1990, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_platform_certificates(tmp_path: Path) -> None:
    authority = ca.generate_ca("Kastle test CA")
    issued = ca.issue_server_certificate(
        authority.key_pem, authority.cert_pem, common_name="broker", hosts=("127.0.0.1", "localhost"),
        valid_days=30,
    )  # fmt: skip
    path = tmp_path / "broker.crt"
    # a chain (the broker's certificate first) after a key, as operators sometimes concatenate them
    path.write_text(issued.key_pem + issued.cert_pem + authority.cert_pem)
    info = certificate_info(str(path))
    assert info == _expected(issued.cert_pem.encode())
    assert int(info["serial"], 16) == issued.serial


@pytest.mark.parametrize(
    ("serial", "not_after"),
    [
        (1, dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)),  # UTCTime
        (127, dt.datetime(2030, 1, 1, tzinfo=dt.UTC)),
        (128, dt.datetime(2030, 1, 1, tzinfo=dt.UTC)),  # a leading zero byte in DER
        (2**158 + 5, dt.datetime(2050, 1, 1, tzinfo=dt.UTC)),  # GeneralizedTime from 2050
        (x509.random_serial_number(), dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)),
    ],
)
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_matches_cryptography(tmp_path: Path, kind: str, serial: int, not_after: dt.datetime) -> None:
    key = rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP384R1())
    pem = _self_signed(key, serial, not_after)
    path = tmp_path / "c.pem"
    path.write_bytes(pem)
    assert certificate_info(str(path)) == _expected(pem)


def test_unreadable_is_empty(tmp_path: Path) -> None:
    assert certificate_info(str(tmp_path / "missing.pem")) == {}
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert certificate_info(str(garbage)) == {}


def test_tls_context_does_not_import_cryptography(tmp_path: Path) -> None:
    authority = ca.generate_ca("Kastle test CA")
    issued = ca.issue_server_certificate(
        authority.key_pem, authority.cert_pem, common_name="broker", hosts=("127.0.0.1",), valid_days=30
    )
    (tmp_path / "c.pem").write_text(issued.cert_pem)
    (tmp_path / "k.pem").write_text(issued.key_pem)
    code = (
        "import sys\n"
        "from brokerd.tls import TlsContext\n"
        f"ctx = TlsContext({str(tmp_path / 'c.pem')!r}, {str(tmp_path / 'k.pem')!r})\n"
        f"assert ctx.info['serial'] == {format(issued.serial, 'x')!r}, ctx.info\n"
        "assert not [m for m in sys.modules if m.startswith('cryptography')]\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=60)
