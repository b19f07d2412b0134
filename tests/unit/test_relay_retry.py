"""How soon a relay's transaction retries when the previous one's commit markers are not written
yet, through aiokafka's own response handler."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.errors import ConcurrentTransactions
from aiokafka.producer.sender import AddPartitionsToTxnHandler
from aiokafka.producer.transaction_manager import TransactionManager
from aiokafka.structs import TopicPartition

from rebound.messaging.relay import CONCURRENT_TRANSACTIONS_RETRY_S, shorten_concurrent_transactions_retry


def _retry_after_concurrent_transactions() -> float:
    tp = TopicPartition("returns.unit-graded.v1", 3)
    sender = SimpleNamespace(_retry_backoff=0.1, _txn_manager=TransactionManager("rebound-grading-relay", 60000))
    handler = AddPartitionsToTxnHandler(sender, [tp])
    response = SimpleNamespace(errors=[(tp.topic, [(tp.partition, ConcurrentTransactions.errno)])])
    return handler.handle_response(response)


async def test_a_transaction_that_meets_the_previous_ones_markers_retries_in_2_ms() -> None:
    shorten_concurrent_transactions_retry()
    assert CONCURRENT_TRANSACTIONS_RETRY_S == 0.002
    assert _retry_after_concurrent_transactions() == CONCURRENT_TRANSACTIONS_RETRY_S
