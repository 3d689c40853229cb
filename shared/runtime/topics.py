"""Topic admin: create every topic of the contract, and their dead-letter topics."""

from __future__ import annotations

from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from schemas import TOPICS, dlq_topic
from shared.runtime.settings import Settings


def contract_topics() -> dict[str, dict[str, str]]:
    """Every topic the pipeline uses (contract name -> topic configs), DLQs included."""
    topics: dict[str, dict[str, str]] = {}
    for name, spec in TOPICS.items():
        topics[name] = {"cleanup.policy": "compact"} if spec.compacted else {}
        topics[dlq_topic(name)] = {}
    return topics


def ensure_topics(settings: Settings, *, timeout_s: float = 120.0) -> list[str]:
    """Create the missing topics with the configured partitions and replication.

    Idempotent; returns the physical names it created.
    """
    admin = KafkaAdminClient(**settings.kafka_client_config(), client_id="installments-admin")
    try:
        existing = set(admin.list_topics())
        wanted = {settings.topic(name): configs for name, configs in contract_topics().items()}
        missing = {
            name: {
                "num_partitions": settings.topic_partitions,
                "replication_factor": settings.topic_replication,
                "configs": configs,
            }
            for name, configs in wanted.items()
            if name not in existing
        }
        if missing:
            try:
                admin.create_topics(missing, timeout_ms=int(timeout_s * 1000))
            except TopicAlreadyExistsError:
                pass  # another process won the race; that is fine
            # Wait until every partition has a leader (a slow broker can take a while).
            admin.wait_for_topics(list(missing), timeout_ms=int(timeout_s * 1000))
        return sorted(missing)
    finally:
        admin.close()


def delete_namespace(settings: Settings) -> list[str]:
    """Delete every topic of a (non-empty) topic prefix; for tests and demo clean-up."""
    if not settings.topic_prefix:
        raise ValueError("refusing to delete topics without a topic prefix")
    admin = KafkaAdminClient(**settings.kafka_client_config(), client_id="installments-admin")
    try:
        doomed = [t for t in admin.list_topics() if t.startswith(settings.topic_prefix)]
        if doomed:
            admin.delete_topics(doomed, timeout_ms=30000, raise_errors=False)
        return doomed
    finally:
        admin.close()


def committed_offsets(
    admin: KafkaAdminClient, groups: list[str], *, timeout_s: float = 30.0
) -> dict[str, dict]:
    """Committed offsets of each group ({group: {TopicPartition: OffsetAndMetadata}}).

    Retries the errors Kafka marks retriable (NotCoordinator, CoordinatorLoadInProgress,
    CoordinatorNotAvailable...): on a freshly started broker the group coordinator is
    still loading `__consumer_offsets`, and a caller waiting for a pipeline to go idle
    must not fail on that.
    """
    import time

    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return admin.list_group_offsets(list(groups))
        except KafkaError as err:
            if not getattr(err, "retriable", False) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
