"""Records at or below the stored offset of their partition cost no per-event work
(#16): no inbox look-up, no repository load, no handler (step 3a drops them first)."""

from __future__ import annotations

from typing import Any

from tests.builders import messages as f
from tests.builders.services import PURCHASES as SERVICE
from tests.harness import Harness

IN = "card.purchases.v1"


def test_records_below_the_stored_offset_skip_the_inbox_lookup(tmp_path):
    h = Harness(SERVICE, tmp_path)
    try:
        records = [h.publish(IN, f.purchase("acc-1")) for _ in range(7)]
        assert len(h.process(*records[:5])) == 5
        looked_up: list[list[str]] = []
        real = h.runner._seen_ids

        def noted(conn: Any, ids: list[str]) -> dict[str, str | None]:
            looked_up.append(list(ids))
            return real(conn, ids)

        h.runner._seen_ids = noted  # type: ignore[method-assign]
        # a re-delivery from offset 0 (after a crash, say): 0-4 are below the stored 5
        out = h.process(*records)
        assert len(out) == 2
        new_ids = [r.value for r in records[5:]]
        assert len(looked_up) == 1 and len(looked_up[0]) == 2
        assert all(any(i.encode() in v for v in new_ids) for i in looked_up[0])
        looked_up.clear()
        assert h.process(*records) == []  # all stored: nothing looked up at all
        assert looked_up == [[]]  # no id: no query (_seen_ids returns at once)
    finally:
        h.close()
