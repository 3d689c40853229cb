"""offers handlers (harness, SQLite): a mixed batch gives what the same records give one by one.

The batch repository (``services/offers/repository.py``) loads what a batch touches once
and writes it back once, so every handler must see the changes of the records before it
in the same batch: an account upserted, an offer made, a plan created, a payment applied,
an end of day closed. Each batch of the scenario is processed twice: in ONE ``h.process(...)`` call
by one harness, and record by record by another, in the order the runtime applies a batch
(partition by partition, in the order each partition first appears in the batch). The
emitted events (ids, payloads, topics, dead-letter headers) must be the same.

The scenario (in ``tests/builders/offers_batches.py``) is shared with
``tests/integration/test_offers.py`` (same check on PostgreSQL, where the repository
writes with COPY and executemany).
"""

from __future__ import annotations

from tests.builders.offers_batches import EXPECTED, check_batches_match_one_by_one, summarise
from tests.builders.services import OFFERS as SERVICE
from tests.harness import Harness


def test_a_mixed_batch_gives_what_its_records_give_one_by_one(tmp_path):
    def make(name: str) -> Harness:
        (tmp_path / name).mkdir()
        return Harness(SERVICE, tmp_path / name)

    outs = check_batches_match_one_by_one(make)
    assert [summarise(out) for out in outs] == EXPECTED
