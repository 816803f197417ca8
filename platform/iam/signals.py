"""Signals other apps connect to, so that iam depends on none of them."""

from django.dispatch import Signal

#: Sent inside the transaction that creates, revokes or rotates an API key of a cluster: the cluster's
#: brokers must learn the new credentials and ACLs once it commits (`provisioning.receivers`).
#: kwargs: cluster_id.
api_keys_changed = Signal()
