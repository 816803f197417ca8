"""Transactions: the transaction coordinator on ``__transaction_state`` and the offsets that
transactions commit. The partition side (markers, last stable offset, aborted transactions)
lives with the producer state (brokerd/idempotence.py)."""

from brokerd.txn.coordinator import TransactionCoordinator, TxnConfig, TxnMetadata

__all__ = ["TransactionCoordinator", "TxnConfig", "TxnMetadata"]
