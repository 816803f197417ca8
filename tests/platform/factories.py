"""factory_boy factories for the control-plane models."""

from __future__ import annotations

import factory
from factory.django import DjangoModelFactory

from accounts.models import AuditEvent, Membership, Organization, Role, User
from brokerd.credentials import make_user_entry
from clusters.models import Broker, Cluster, ClusterStatus, Host
from controlplane.ids import new_cluster_id
from iam.models import ApiKey

PASSWORD = "correct horse battery staple"


class OrganizationFactory(DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    password = factory.django.Password(PASSWORD)


class MembershipFactory(DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.OWNER


class ClusterFactory(DjangoModelFactory):
    """A cluster row as provisioning would leave it (default RUNNING); no task is enqueued."""

    class Meta:
        model = Cluster

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"cluster-{n}")
    plan = "basic"
    status = ClusterStatus.RUNNING
    bootstrap_servers = factory.Sequence(lambda n: f"127.0.0.1:{19000 + n}")
    public_id = factory.LazyFunction(new_cluster_id)
    internal_verifier = factory.LazyAttribute(
        lambda o: make_user_entry(Cluster(public_id=o.public_id).internal_password())
    )


class HostFactory(DjangoModelFactory):
    class Meta:
        model = Host

    name = factory.Sequence(lambda n: f"host{n}")
    address = "127.0.0.1"
    port_min = 20000
    port_max = 20999
    capacity = 50


class BrokerFactory(DjangoModelFactory):
    class Meta:
        model = Broker

    cluster = factory.SubFactory(ClusterFactory)
    node_id = 0
    host = factory.SubFactory(HostFactory)
    port = factory.Sequence(lambda n: 20000 + 2 * (n % 500))
    admin_port = factory.Sequence(lambda n: 20001 + 2 * (n % 500))


class ApiKeyFactory(DjangoModelFactory):
    class Meta:
        model = ApiKey
        exclude = ["secret"]

    cluster = factory.SubFactory(ClusterFactory)
    key = factory.Sequence(lambda n: f"TESTKEY{n:09d}")
    description = "factory key"
    secret = "factory-secret-" + "x" * 40
    verifier = factory.LazyAttribute(lambda o: make_user_entry(o.secret))


class AuditEventFactory(DjangoModelFactory):
    class Meta:
        model = AuditEvent

    organization = factory.SubFactory(OrganizationFactory)
    actor_label = "system"
    action = "test.event"
