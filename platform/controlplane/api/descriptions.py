"""What each REST operation does, written for API users (the OpenAPI schema's `description`).

Kept in one table so the schema never falls back to a class's internal docstring, and so a new
operation without a description is caught by a test. Keys are drf-spectacular operation ids.
Roles: reads need `member`, writes `admin`, members and the organization `owner`, unless stated.
"""

from __future__ import annotations

OPERATIONS: dict[str, str] = {
    # --- sign-up and identity ---------------------------------------------------------------------
    "signup": "Create an organization with you as its owner, and return a REST token for it. "
    "The token's secret is in this response only: store it now. New organizations get a trial credit.",
    "auth_tokens_list": "List your REST tokens in this organization (never their secrets). "
    "Revoked tokens are listed with their revocation time.",
    "auth_tokens_create": "Log in with email and password and receive a new REST token (`name` labels "
    "it, e.g. `ci`). The secret is returned once. Repeated failures lock the account for a while.",
    "auth_tokens_retrieve": "Show one of your REST tokens: its name, prefix, creation, last use and "
    "revocation time.",
    "auth_tokens_destroy": "Revoke one of your REST tokens. Requests made with it fail from now on.",
    "me": "Who you are: your user, your organization and your role in it.",
    "me_password_change": "Change your password. Give the current one and a new one that passes the "
    "password rules.",
    # --- organization ------------------------------------------------------------------------------
    "organization_retrieve": "Your organization: its id, name and creation time.",
    "organization_update": "Rename your organization. Owner only.",
    "members_list": "List the members of your organization with their roles (owner, admin, member).",
    "members_retrieve": "Show one member of your organization and their role.",
    "members_partial_update": "Change a member's role. Owner only; the last owner cannot be demoted.",
    "members_destroy": "Remove a member from your organization. Owner only; the last owner cannot be "
    "removed. Their tokens for this organization stop working.",
    "audit_events_list": "The organization's audit log, newest first: who did what, to which object, "
    "from which address. Filter by `action` (e.g. `cluster.create`, or `cluster.` for every cluster "
    "event), actor, target and time range.",
    "invitations_list": "The open invitation links of your organization (not yet used, revoked or "
    "expired), with the role each grants. Their tokens are never listed.",
    "invitations_create": "Create an invitation link with a role (at most your own). Whoever opens the "
    "link joins your organization with that role; it works once and expires after 7 days. The token and "
    "link are in this response only. Admin role.",
    "invitations_retrieve": "One open invitation: its role, who it is for, who created it and when it "
    "expires.",
    "invitations_destroy": "Revoke an invitation: its link stops working at once. Admin role.",
    "invitations_accept": "Join the organization an invitation names, as the signed-in user, with the "
    "invitation's role. Give the token from the link.",
    # --- plans and clusters ------------------------------------------------------------------------
    "plans_list": "The plans a cluster can be created with: their limits (partitions, throughput, "
    "retention, API keys, connections, message size) and today's prices. No authentication needed.",
    "plans_retrieve": "One plan's limits and today's prices, by name (basic, standard, dedicated). "
    "No authentication needed.",
    "clusters_list": "Your organization's clusters with their status and connection settings. "
    "Deleted clusters are left out unless you ask for `status=DELETED`.",
    "clusters_create": "Create a Kafka cluster. Returns 202 with status PROVISIONING; poll the "
    "cluster until it is RUNNING (usually seconds), then create topics and API keys. Names use ASCII "
    "letters, digits, dots and dashes and are unique in your organization. Admin role.",
    "clusters_retrieve": "One cluster: status (and the reason when FAILED), bootstrap servers, security "
    "protocol and SASL mechanisms to configure clients with.",
    "clusters_partial_update": "Rename a cluster. Admin role. The plan and security protocol are "
    "fixed for the cluster's life.",
    "clusters_destroy": "Delete a cluster: returns 202 with status DELETING. Its brokers stop, and its "
    "topics, messages and API keys are removed. This cannot be undone. Admin role.",
    "clusters_brokers_list": "The cluster's brokers: node id, host (its rack), the address clients "
    "connect to, whether it is online, and how many partitions it leads.",
    "clusters_retry_create": "Provision a FAILED cluster again (202, PROVISIONING). Admin role.",
    "clusters_ca_pem": "The CA certificate (PEM) your clients verify the brokers of a SASL_SSL cluster "
    "with, e.g. `ssl.ca.location=kastle-ca.pem`.",
    # --- API keys and service accounts -------------------------------------------------------------
    "clusters_api_keys_list": "The cluster's API keys: key, owner, scope, status and expiry. "
    "Secrets are never listed.",
    "clusters_api_keys_create": "Create an API key for Kafka clients: use the key as SASL username and "
    "the secret as password. The secret is in this response only. A key belongs to you or to a service "
    "account. Admin role.",
    "clusters_api_keys_retrieve": "One API key: owner, scope, status, expiry and when it was last "
    "used. Never its secret.",
    "clusters_api_keys_destroy": "Revoke an API key. Clients using it are refused within seconds. "
    "Admin role.",
    "clusters_api_keys_rotate_create": "Rotate an API key: a new key with the same owner and access is "
    "returned (with its secret, once), and the old key keeps working for `overlap_seconds` so clients "
    "can switch over. Admin role.",
    "service_accounts_list": "Your organization's service accounts: identities for applications that "
    "own API keys, independent of any person.",
    "service_accounts_create": "Create a service account. Give its API keys access with ACLs whose "
    "principal is the service account's id (sa-…). Admin role.",
    "service_accounts_retrieve": "One service account and its description.",
    "service_accounts_partial_update": "Change a service account's name or description. Admin role.",
    "service_accounts_destroy": "Delete a service account and revoke all of its API keys. Admin role.",
    # --- ACLs --------------------------------------------------------------------------------------
    "clusters_acls_list": "The cluster's ACLs, as Kafka's DescribeAcls reports them. Filter by resource, "
    "pattern type, principal, host, operation and permission.",
    "clusters_acls_create": "Allow or deny a principal an operation on a topic, group, cluster or "
    "transactional id (literal or prefixed names). For a service account the ACL applies to each of its "
    "API keys, including keys issued later. Admin role.",
    "clusters_acls_delete_matching": "Delete every ACL matching the filter (give at least one field); "
    "returns the ACLs deleted. Admin role.",
    "clusters_acls_destroy": "Delete one ACL by id. Admin role.",
    # --- topics and consumer groups ------------------------------------------------------------------
    "clusters_topics_list": "The cluster's topics and their partition counts, read from the brokers.",
    "clusters_topics_create": "Create a topic with a partition count and topic configs by Kafka name "
    "(e.g. `retention.ms`). Every invalid field is reported at once; plan limits apply. Admin role.",
    "clusters_topics_retrieve": "One topic: its partitions with leaders and offsets, size on disk, "
    "messages retained, and every config with its source (e.g. DYNAMIC_TOPIC_CONFIG, DEFAULT_CONFIG).",
    "clusters_topics_partial_update": "Change a topic's configs (null resets one to its default) or "
    "grow its partition count. Admin role.",
    "clusters_topics_destroy": "Delete a topic and all of its messages. Admin role.",
    "clusters_consumer_groups_list": "The cluster's consumer groups with their state and member count.",
    "clusters_consumer_groups_retrieve": "One consumer group: state, members and their assignments, and "
    "per partition the committed offset, the end offset and the lag.",
    "clusters_consumer_groups_destroy": "Delete a consumer group and its committed offsets. The group "
    "must have no active members. Admin role.",
    "clusters_consumer_groups_reset_offsets_create": "Move a group's committed offsets to the earliest "
    "or latest message, a time, or an offset, for a topic or some partitions. With `dry_run` nothing "
    "changes and the new offsets are shown. The group must have no active members. Admin role.",
    "clusters_transactions_list": "The cluster's open transactions, oldest first: transactional id, "
    "producer id and epoch, state, age and the partitions each has written. A long-running one may be "
    "hanging.",
    "clusters_transactions_abort_create": "Abort a hanging transaction on one partition, as Kafka's "
    "`kafka-transactions.sh abort` does: only a producer that has a transaction open there, at the "
    "epoch the partition knows. Admin role.",
    # --- usage and billing -----------------------------------------------------------------------
    "usage_list": "Metered usage per hour or day: bytes and records in and out, storage and partitions, "
    "by cluster, API key and topic. Usage is what billing prices.",
    "billing_costs_list": "Costs for a date range, grouped by cluster, API key, topic or day, with a line "
    "per billing dimension (quantity, unit price, amount).",
    "billing_credit_retrieve": "Your credit: granted, used by invoices, cost not invoiced yet, and "
    "what remains.",
    "billing_invoices_list": "Your invoices, one per month, newest first.",
    "billing_invoices_retrieve": "One invoice with its lines per cluster and dimension, the credit "
    "applied and the total due.",
    "billing_spend_cap_retrieve": "The monthly spend cap and whether it is reached. When this month's "
    "cost reaches it, producing is slowed on every cluster until the month ends or the cap is raised.",
    "billing_spend_cap_update": "Set the monthly spend cap in USD, or null for no cap. Owner only.",
    # --- alerts (the other alert operations describe themselves with extend_schema) ------------------
    "alerts_channels_retrieve": "One alert channel of your organization: its kind (e-mail or webhook), "
    "name and where it delivers. Secrets are never shown.",
    "alerts_rules_retrieve": "One alert rule: what it measures, its threshold and channels, and its "
    "state (ok or firing) with its last value.",
    "alerts_rules_destroy": "Delete an alert rule: it is no longer evaluated and notifies no one.",
}
