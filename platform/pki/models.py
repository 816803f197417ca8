"""The TLS certificate of each cluster's brokers, issued by the platform CA (pki.services)."""

from __future__ import annotations

from django.db import models

from clusters.models import Cluster


class BrokerCertificate(models.Model):
    """One per SASL_SSL cluster: every broker of the cluster serves it (its SANs name all their hosts).

    The private key is stored encrypted with a key derived from SECRET_KEY (pki.services); the
    hosts' workers write it, with the certificate and the CA, next to the cluster's credentials.
    """

    cluster = models.OneToOneField(Cluster, on_delete=models.CASCADE, related_name="tls_certificate")
    cert_pem = models.TextField()
    key_encrypted = models.TextField(editable=False)
    ca_pem = models.TextField(help_text="The CA bundle tenants verify the brokers with")
    serial = models.CharField(max_length=40)
    hosts = models.JSONField(default=list, help_text="Host names and addresses in the certificate's SANs")
    not_before = models.DateTimeField()
    not_after = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"certificate {self.serial} of {self.cluster.public_id} (until {self.not_after:%Y-%m-%d})"


class CertificateAuthority(models.Model):
    """The platform CA's certificate: one row, the source of truth for which CA is current.

    Its private key is never in the database: it stays in KASTLE_DATA_DIR/pki/ca.key on the
    control-plane workers (pki.services.authority). A worker whose directory holds no key, or
    another key, refuses to issue instead of starting a second CA.
    """

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    cert_pem = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(singleton=True), name="pki_ca_singleton")]

    def __str__(self) -> str:
        return f"platform CA (since {self.created_at:%Y-%m-%d})"
