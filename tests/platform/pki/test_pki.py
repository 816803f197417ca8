"""The platform CA and broker certificates: generation, issuance, renewal, files, the CA endpoint."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from django.test import override_settings
from django.utils import timezone

from pki import ca, services
from pki.clients import client_configs, kcat_args
from pki.models import BrokerCertificate
from tests.platform.api import assert_error
from tests.platform.factories import BrokerFactory, ClusterFactory, HostFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def data_dir(tmp_path, settings):
    settings.KASTLE_DATA_DIR = tmp_path
    return tmp_path


def _tls_cluster(tenant=None, addresses=("127.0.0.1",)):
    kwargs = {"organization": tenant.organization} if tenant is not None else {}
    cluster = ClusterFactory(security_protocol="SASL_SSL", **kwargs)
    for node, address in enumerate(addresses, start=1):
        BrokerFactory(cluster=cluster, node_id=node, host=HostFactory(address=address))
    return cluster


def test_the_ca_is_generated_once_with_a_private_key_file(data_dir) -> None:
    key_pem, cert_pem = services.authority()
    assert services.authority() == (key_pem, cert_pem)
    key_file = data_dir / "pki" / "ca.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "pki").stat().st_mode) == 0o700
    cert = ca.load_certificate(cert_pem)
    from cryptography import x509

    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.key_matches(key_pem, cert_pem)


def test_a_worker_without_the_ca_key_refuses_to_issue_and_never_starts_a_second_ca(
    data_dir, tmp_path_factory, settings
) -> None:
    from pki.models import CertificateAuthority

    _, cert_pem = services.authority()
    settings.KASTLE_DATA_DIR = tmp_path_factory.mktemp("other-worker")
    with pytest.raises(services.CaUnavailable, match="share KASTLE_DATA_DIR/pki"):
        services.authority()
    cluster = _tls_cluster()
    with pytest.raises(services.CaUnavailable):
        services.certificate_ensure(cluster=cluster)
    assert CertificateAuthority.objects.count() == 1
    assert services.certificates_renew_due() == []  # logged, retried at the next pass
    settings.KASTLE_DATA_DIR = data_dir
    assert services.certificate_ensure(cluster=cluster).ca_pem == cert_pem


def test_a_certificate_names_every_host_and_its_key_is_encrypted_at_rest() -> None:
    cluster = _tls_cluster(addresses=("127.0.0.1", "127.0.0.2", "kafka.example.com"))
    cert = services.certificate_ensure(cluster=cluster)
    assert ca.certificate_hosts(cert.cert_pem) == {"127.0.0.1", "127.0.0.2", "kafka.example.com"}
    assert "PRIVATE KEY" not in cert.key_encrypted
    key_pem = services.broker_key_pem(cert)
    assert ca.key_matches(key_pem, cert.cert_pem)
    assert cert.ca_pem == services.authority()[1]
    lifetime = cert.not_after - timezone.now()
    assert dt.timedelta(days=89) < lifetime <= dt.timedelta(days=90)
    # Nothing to do the second time.
    assert services.certificate_ensure(cluster=cluster).serial == cert.serial
    # Verifies with Python's ssl against the CA, for each name.
    import ssl

    ctx = ssl.create_default_context(cadata=cert.ca_pem)
    assert ctx.cert_store_stats()["x509_ca"] == 1


def test_plaintext_clusters_get_no_certificate() -> None:
    cluster = ClusterFactory(security_protocol="SASL_PLAINTEXT")
    BrokerFactory(cluster=cluster, node_id=1)
    assert services.certificate_ensure(cluster=cluster) is None
    assert not BrokerCertificate.objects.exists()


def test_reconciliation_reissues_near_expiry_moved_hosts_and_lost_keys(settings) -> None:
    cluster = _tls_cluster()
    first = services.certificate_ensure(cluster=cluster)
    assert services.certificates_renew_due() == []
    BrokerCertificate.objects.filter(pk=first.pk).update(not_after=timezone.now() + dt.timedelta(days=29))
    assert services.certificates_renew_due() == [cluster.public_id]
    second = BrokerCertificate.objects.get(cluster=cluster)
    assert second.serial != first.serial and second.not_after > timezone.now() + dt.timedelta(days=89)
    # A broker moved to another host: the certificate must name it.
    broker = cluster.brokers.get()
    broker.host = HostFactory(address="10.1.2.3")
    broker.save()
    assert services.certificates_renew_due() == [cluster.public_id]
    assert "10.1.2.3" in BrokerCertificate.objects.get(cluster=cluster).hosts
    # A changed SECRET_KEY cannot decrypt the key: re-issued.
    settings.SECRET_KEY = "another secret key"
    third = BrokerCertificate.objects.get(cluster=cluster)
    assert services.broker_key_pem(third) is None
    assert services.certificate_ensure(cluster=cluster).serial != third.serial


def test_files_on_the_host(tmp_path) -> None:
    cluster = _tls_cluster()
    services.certificate_ensure(cluster=cluster)
    cluster_dir = tmp_path / "clusters" / cluster.public_id
    assert services.broker_tls_write(cluster=cluster, cluster_dir=cluster_dir) is True
    assert services.broker_tls_write(cluster=cluster, cluster_dir=cluster_dir) is False  # unchanged
    files = services.tls_files(cluster_dir)
    assert stat.S_IMODE(files["key"].stat().st_mode) == 0o600
    assert ca.key_matches(files["key"].read_text(), files["cert"].read_text())
    # brokerd accepts them
    from brokerd.tls import build_context

    build_context(str(files["cert"]), str(files["key"]))
    # ... and the rendered broker config points at them and validates
    from provisioning import brokerconf

    settings = brokerconf.broker_settings(
        public_id=cluster.public_id, plan=cluster.plan_limits, node_id=1, address="127.0.0.1", port=21000,
        admin_port=21001, data_dir=tmp_path / "data", credentials_file=cluster_dir / "credentials.json",
        security_protocol="SASL_SSL", tls_files=files,
    )  # fmt: skip
    assert settings["listeners"] == ["SASL_SSL://127.0.0.1:21000"]
    assert settings["tls.cert.file"] == str(files["cert"])
    brokerconf.validate(brokerconf.render_toml(settings))


def test_ca_pem_endpoint(tenant, other_tenant, api_client) -> None:
    cluster = _tls_cluster(tenant)
    path = f"/api/v1/clusters/{cluster.public_id}/ca.pem"
    assert_error(tenant.client.get(path), 409, "certificate_not_issued")
    services.certificate_ensure(cluster=cluster)
    response = tenant.client.get(path)
    assert response.status_code == 200 and response["Content-Type"] == "application/x-pem-file"
    assert response.content.decode() == services.authority()[1]
    assert "kastle-ca.pem" in response["Content-Disposition"]
    assert tenant.member("member").client.get(path).status_code == 200
    assert_error(other_tenant.client.get(path), 404)
    assert_error(tenant.client.get("/api/v1/clusters/lkc-nothere/ca.pem"), 404)
    assert api_client.get(path).status_code == 401
    plain = ClusterFactory(organization=tenant.organization, security_protocol="SASL_PLAINTEXT")
    assert_error(tenant.client.get(f"/api/v1/clusters/{plain.public_id}/ca.pem"), 409, "tls_disabled")


def test_cluster_create_defaults_to_sasl_ssl_with_a_plaintext_opt_in(tenant) -> None:
    made = tenant.client.post("/api/v1/clusters", {"name": "a", "plan": "basic"})
    assert made.status_code == 202 and made.json()["security_protocol"] == "SASL_SSL"
    opted = tenant.client.post(
        "/api/v1/clusters", {"name": "b", "plan": "basic", "security_protocol": "SASL_PLAINTEXT"}
    )
    assert opted.status_code == 202 and opted.json()["security_protocol"] == "SASL_PLAINTEXT"
    bad = {"name": "c", "plan": "basic", "security_protocol": "SSL"}
    error = assert_error(tenant.client.post("/api/v1/clusters", bad), 400)
    assert "security_protocol" in error["details"]


def test_client_configs_per_client() -> None:
    cluster = ClusterFactory(security_protocol="SASL_SSL", bootstrap_servers="127.0.0.1:21000")
    configs = client_configs(cluster, key="K", secret="S")
    assert set(configs) == {"confluent_kafka", "kafka_python", "aiokafka", "kcat", "java"}
    assert configs["confluent_kafka"]["ssl.ca.location"] == "kastle-ca.pem"
    assert configs["confluent_kafka"]["security.protocol"] == "SASL_SSL"
    assert configs["kafka_python"]["ssl_cafile"] == "kastle-ca.pem"
    assert configs["kafka_python"]["ssl_check_hostname"] is True
    assert configs["aiokafka"]["sasl_plain_password"] == "S"
    assert configs["java"]["ssl.truststore.type"] == "PEM"
    assert kcat_args(cluster, key="K", secret="S")[:2] == ["-b", "127.0.0.1:21000"]
    plain = client_configs(ClusterFactory(security_protocol="SASL_PLAINTEXT"))
    assert "ssl.ca.location" not in plain["confluent_kafka"] and "ssl_cafile" not in plain["kafka_python"]


@override_settings(KASTLE_TLS_CERT_DAYS=2, KASTLE_TLS_RENEW_DAYS=1)
def test_lifetime_and_renewal_window_are_settings() -> None:
    cluster = _tls_cluster()
    cert = services.certificate_ensure(cluster=cluster)
    assert cert.not_after - timezone.now() < dt.timedelta(days=2, minutes=1)
    assert services.certificates_renew_due() == []
