"""The stores under contract, and what their tests share.

Every implementation of gateway.store.base.Store is listed in STORES; the
contract tests (test_contract.py) run against each. A new store joins by
adding its factory here: a callable taking the file path and the common
settings (retention_days, records_retention_days, max_disk_mb, max_queue, ...).
"""

from __future__ import annotations

from gateway.samples import Quality, Sample
from gateway.store import SqliteStore

T0 = 1_700_000_003.25  # deliberately not on a bucket boundary
EQ = "coater1"


class SealingStore(SqliteStore):
    """The store with compaction forced: every flush also seals what is committed into chunks.

    Tests that take `store_cls` run against both, so that history, latest and the
    outbox are proven on the head's rows and on compressed chunks alike.
    """

    def __init__(self, path, *args, **kwargs):
        # Only flush() seals (the compactor thread would, at its own times, make chunks of other sizes).
        super().__init__(path, *args, seal_after_s=0, seal_span_s=0, compact_check_s=3600, **kwargs)

    async def flush(self) -> None:
        await super().flush()
        await self.compact()


# name -> factory. "sqlite-sealed" proves history, latest and the outbox on compressed chunks as well as on the head.
STORES = {"sqlite-head": SqliteStore, "sqlite-sealed": SealingStore}


def sample(path: str, value, ts: float, quality: Quality = Quality.GOOD, reason: str = "", unit: str = "",
           eq: str = EQ) -> Sample:
    return Sample(eq, path, value, unit, ts, ts + 0.01, quality, reason)
