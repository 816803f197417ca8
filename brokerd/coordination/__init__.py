"""Cluster coordination through etcd: broker registrations, the controller election and
the per-partition state that replication follows. See docs/replication.md.

Modules: ``url`` (the --coordination URL), ``etcd`` (the client), ``keys`` (the key
layout), ``records`` (the stored values), ``session`` (a broker's registration),
``view`` (the watched metadata), ``controller`` and ``leadership`` (the controller's
actions and decisions), ``placement`` (replica assignment), ``partitions`` (a leader's
ISR changes), ``access`` (per-cluster etcd users and roles), ``fencing`` (fast failure
detection), ``producer_ids`` (cluster-wide producer id blocks).
"""
