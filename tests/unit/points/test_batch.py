"""A mixed batch in ONE runtime call equals the same events processed one by one.

The batch repository loads and locks once per batch and handlers work on its in-memory
view: a second event of an account in the batch must see the first one's balance
(consecutive ``balance_after``), tier, purchases, plans and first-plan flag. The same
scenario (in ``tests/builders/points_batches.py``) runs on PostgreSQL in
``tests/integration/test_points.py``.

Note: the runtime processes a batch partition by partition (in the order each
``(topic, partition)`` first appears), so the scenario keeps each partition's records
together and interleaves topics by using two partitions.
"""

from __future__ import annotations

import pytest

from tests.builders.points_batches import compare_batch_with_one_by_one, counting_service
from tests.builders.services import POINTS as SERVICE
from tests.harness import Harness


@pytest.mark.parametrize("with_reject", [False, True], ids=["fast-path", "replayed"])
def test_a_mixed_batch_gives_what_one_by_one_gives(tmp_path, with_reject):
    loads: list[int] = []
    (tmp_path / "batch").mkdir()
    (tmp_path / "single").mkdir()
    batch = Harness(counting_service(loads), tmp_path / "batch")
    single = Harness(SERVICE, tmp_path / "single")
    try:
        compare_batch_with_one_by_one(batch, single, loads, with_reject=with_reject)
    finally:
        batch.close()
        single.close()
