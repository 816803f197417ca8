"""Replication: the broker's part in a cluster formed through etcd (brokerd/coordination/).

``membership`` registers the broker, follows the cluster's metadata, runs its controller
candidacy, and answers who the brokers and the controller are.
"""
