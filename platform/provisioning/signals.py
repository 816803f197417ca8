"""Signals other apps connect to (metering collects a deleted broker's final usage here)."""

from django.dispatch import Signal

#: Sent on the broker's host just before its data is removed, after brokerd stopped.
#: kwargs: broker (clusters.Broker), metrics (its last /metrics text, or None if it was not
#: running), data_dir (pathlib.Path of its data: the usage journal is still there).
broker_final_state = Signal()
