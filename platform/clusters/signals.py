"""Signals other apps connect to, so that clusters depends on none of them.

Provisioning starts, removes, restarts and adds brokers (`provisioning.receivers`). All are sent after the
commit of the write that asks for them, so a rolled-back write never starts anything.
"""

from django.dispatch import Signal

#: A cluster is PROVISIONING (created, or a FAILED one retried). kwargs: cluster_id.
provision_requested = Signal()

#: A cluster is DELETING. kwargs: cluster_id.
deprovision_requested = Signal()

#: A RUNNING cluster's brokers are to be restarted one at a time. kwargs: cluster_id.
restart_requested = Signal()

#: A RUNNING Dedicated cluster grows (its broker count was raised). kwargs: cluster_id.
scale_requested = Signal()
