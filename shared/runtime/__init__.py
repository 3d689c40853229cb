"""The consumer runtime every service runs on: exactly-once effects over Kafka + SQL.

For a service author: :mod:`shared.runtime.api` (``Service``, ``Context``, ``Reject``,
``Defer``, the barrier ``Context.wait_for``). The machinery, one concern a module:

- :mod:`~shared.runtime.runner`: the loop (poll, process, publish, commit), its
  numbered steps, start-up and shutdown;
- :mod:`~shared.runtime.batch`: decode and the batch transaction, split on failure;
- :mod:`~shared.runtime.poison`: crash counting;
- :mod:`~shared.runtime.kafka_io`: publish the outbox, commit and seek offsets;
- :mod:`~shared.runtime.records`: a batch's records, dead-letter helpers, transient errors;
- :mod:`~shared.runtime.base`: the runner's state.
"""

from shared.runtime.api import (
    BARRIER_MAX_DELAY_S,
    BARRIER_RECORDS_PER_S,
    Context,
    Defer,
    Handler,
    NotLoaded,
    Reject,
    Service,
    barrier_delay,
)
from shared.runtime.records import DEAD_LETTER_OVERHEAD, Fenced, is_transient
from shared.runtime.runner import Runner, run_service

__all__ = [
    "BARRIER_MAX_DELAY_S",
    "BARRIER_RECORDS_PER_S",
    "DEAD_LETTER_OVERHEAD",
    "Context",
    "Defer",
    "Fenced",
    "Handler",
    "NotLoaded",
    "Reject",
    "Runner",
    "Service",
    "barrier_delay",
    "is_transient",
    "run_service",
]
