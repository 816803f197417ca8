"""Errors of provisioning steps: whether retrying can help."""


class TransientError(Exception):
    """Worth retrying with backoff (a host may come back, a port may free up)."""


class PermanentError(Exception):
    """Retrying will not help; the cluster becomes FAILED with this message as the reason."""
