"""TLS for the SASL_SSL listener: the server context, reloaded when the certificate changes.

Settings (flags and TOML; Kafka's ``ssl.keystore.*`` names are Java keystore specific, so
brokerd takes PEM files like librdkafka does)::

    tls.cert.file   PEM certificate chain (the broker's certificate first)   --tls-cert FILE
    tls.key.file    PEM private key of that certificate (unencrypted)        --tls-key FILE
    tls.min.version TLSv1.2 (default) or TLSv1.3
    tls.poll.ms     how often the two files are checked for changes (1000)

Reload without dropping connections: every handshake starts on one *listening* context whose
SNI callback swaps in the current context (``SSLObject.context = current``), which OpenSSL
applies to that handshake only. When the certificate or key file changes (mtime, inode or
size), a fresh context is built and, if the pair loads and matches, becomes current; open
connections keep the session they negotiated. A pair that fails to load (e.g. the key was
replaced but not yet the certificate) is retried at the next poll, and the previous context
stays in service meanwhile.
"""

from __future__ import annotations

import asyncio
import binascii
import calendar
import logging
import os
import ssl
from typing import Any

log = logging.getLogger("brokerd.tls")

MIN_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class TlsError(ValueError):
    """The certificate or key cannot be used; the message is one line for the operator."""


def build_context(cert_file: str, key_file: str, min_version: str = "TLSv1.2") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_VERSIONS[min_version]
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.set_alpn_protocols([])  # Kafka does not negotiate ALPN
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except FileNotFoundError as exc:
        raise TlsError(f"TLS file {exc.filename} does not exist; check tls.cert.file/tls.key.file") from None
    except PermissionError as exc:
        raise TlsError(f"TLS file {exc.filename} is not readable; fix its permissions") from None
    except ssl.SSLError as exc:
        raise TlsError(
            f"cannot load the TLS certificate {cert_file} with key {key_file} ({exc.reason or exc}); "
            "pass a PEM certificate chain and its matching unencrypted PEM key"
        ) from None
    return ctx


def certificate_info(cert_file: str) -> dict[str, Any]:
    """Serial and expiry of the first certificate in a PEM file (for logs and /metrics).

    Read with a few lines of DER rather than the ``cryptography`` package: importing
    ``cryptography.x509`` costs every SASL_SSL broker ~9 MB of RSS for two fields.
    """
    try:
        with open(cert_file, "rb") as fh:
            pem = fh.read()
        begin = pem.index(b"-----BEGIN CERTIFICATE-----")
        end = pem.index(b"-----END CERTIFICATE-----", begin)
        der = binascii.a2b_base64(pem[begin + 27 : end])
        serial, not_after = _serial_and_not_after(der)
        return {"serial": format(serial, "x"), "not_after": not_after}
    except Exception:  # informational only
        return {}


def _der_tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the DER element at ``pos``."""
    tag = der[pos]
    length = der[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if not 0 < n <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(der[pos : pos + n], "big")
        pos += n
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _der_time(tag: int, value: bytes) -> float:
    text = value.decode("ascii")
    if not text.endswith("Z"):
        raise ValueError("certificate time is not UTC")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ (RFC 5280: YY < 50 is 20YY)
        year = int(text[:2])
        year += 2000 if year < 50 else 1900
        rest = text[2:-1]
    elif tag == 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        year = int(text[:4])
        rest = text[4:-1]
    else:
        raise ValueError("not a certificate time")
    fields = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    return float(calendar.timegm((year, *fields, 0, 0, 0)))


def _serial_and_not_after(der: bytes) -> tuple[int, float]:
    """The serial number and notAfter (epoch seconds) of a DER X.509 certificate (RFC 5280)."""
    tag, pos, _end = _der_tlv(der, 0)  # Certificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, pos, _end = _der_tlv(der, pos)  # TBSCertificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, start, end = _der_tlv(der, pos)
    if tag == 0xA0:  # [0] EXPLICIT version
        tag, start, end = _der_tlv(der, end)
    if tag != 0x02:
        raise ValueError("no serial number")
    serial = int.from_bytes(der[start:end], "big", signed=True)
    _tag, _start, end = _der_tlv(der, end)  # signature AlgorithmIdentifier
    _tag, _start, end = _der_tlv(der, end)  # issuer Name
    tag, pos, _end = _der_tlv(der, end)  # Validity
    if tag != 0x30:
        raise ValueError("no validity")
    _tag, _start, pos = _der_tlv(der, pos)  # notBefore
    tag, start, end = _der_tlv(der, pos)  # notAfter
    return serial, _der_time(tag, der[start:end])


class TlsContext:
    """The listening SSLContext plus the current one; ``poll`` reloads on file changes."""

    def __init__(self, cert_file: str, key_file: str, min_version: str = "TLSv1.2") -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.min_version = min_version
        self.current = build_context(cert_file, key_file, min_version)
        self.listening = build_context(cert_file, key_file, min_version)
        self.listening.sni_callback = self._select
        self._stamp = self._stat()
        self._failed_stamp: tuple | None = None
        self.reloads = 0
        self.info = certificate_info(cert_file)

    def _select(self, sslobj: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        current = self.current
        if sslobj.context is not current:
            sslobj.context = current
        return None

    def _stat(self) -> tuple:
        out = []
        for path in (self.cert_file, self.key_file):
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_ino, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def poll(self) -> bool:
        """Reload if either file changed and the new pair loads. Returns True on a reload."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        try:
            ctx = build_context(self.cert_file, self.key_file, self.min_version)
        except TlsError as exc:
            if stamp != self._failed_stamp:  # once per state of the files, not at every poll
                self._failed_stamp = stamp
                log.warning("TLS certificate not reloaded yet, keeping the previous one: %s", exc)
            return False  # the stamp is kept: retried at the next poll
        self._stamp = stamp
        self.current = ctx
        self.reloads += 1
        self.info = certificate_info(self.cert_file)
        log.info(
            "TLS certificate reloaded from %s (serial %s); new handshakes use it",
            self.cert_file, self.info.get("serial", "?"),
        )
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.poll()
            except Exception:  # never let the watcher die
                log.exception("TLS watcher failed")
