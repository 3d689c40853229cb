"""The committed AsyncAPI document (schemas/asyncapi.yaml) is up to date and describes the
contract: every topic a channel, every event type a message whose payload is the envelope."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import asyncapi
from schemas.registry import BUSINESS_DAY_KEY, ENVELOPES, EVENT_TYPES, TOPICS, dlq_topic
from shared.registry import SERVICE_NAMES, consumed_topics
from shared.runtime.settings import Settings
from tests.builders import examples

ENVELOPE_FIELDS = {"id", "type", "source", "time", "subject", "data"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return yaml.safe_load(asyncapi.ASYNCAPI_PATH.read_text(encoding="utf-8"))


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> Any:
    """Follow a local ``$ref`` (``#/a/b``) in ``doc``."""
    ref = node["$ref"]
    assert ref.startswith("#/"), ref
    target: Any = doc
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


# ------------------------------------------------------------------ drift


def test_committed_document_does_not_drift(capsys) -> None:  # type: ignore[no-untyped-def]
    code = asyncapi.main(["--check"])
    assert code == 0, capsys.readouterr().err


def test_check_reports_drift(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "asyncapi.yaml"
    assert asyncapi.main(["--check", "--out", str(out)]) == 1
    assert "missing:" in capsys.readouterr().err
    assert asyncapi.main(["--out", str(out)]) == 0
    assert asyncapi.main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("asyncapi: 3.0.0", "asyncapi: 2.6.0"))
    capsys.readouterr()
    assert asyncapi.main(["--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "differs:" in err and "python -m schemas.asyncapi" in err


def test_rendering_is_deterministic() -> None:
    assert asyncapi.render() == asyncapi.render()


# ------------------------------------------------------------------ document


def test_document_header(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    info = doc["info"]
    assert info["title"] and info["version"]
    for needed in (
        "envelope",
        "subject",
        "key",
        "Money",
        "PAN",
        "Luhn",
        ".dlq",
        "Tolerant reader",
        "unsupported_schema_version",
        "too_large",
    ):
        assert needed in info["description"], needed
    assert doc["defaultContentType"] == "application/json"
    assert doc["servers"]["production"]["protocol"] == "kafka"


def test_every_topic_is_a_channel_with_its_messages(doc: dict[str, Any]) -> None:
    channels = doc["channels"]
    for name, spec in TOPICS.items():
        channel = channels[name]
        assert channel["address"] == name
        assert set(channel["messages"]) == set(spec.event_types)
        for event_type, ref in channel["messages"].items():
            assert _resolve(doc, ref)["name"] == event_type
        description = channel["description"]
        assert spec.producer in description
        assert ("Compacted" in description) == spec.compacted
        policy = channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"]
        assert policy == (["compact"] if spec.compacted else ["delete"])


def test_every_topic_has_a_dead_letter_channel_with_its_headers(doc: dict[str, Any]) -> None:
    for name in TOPICS:
        channel = doc["channels"][dlq_topic(name)]
        assert channel["address"] == dlq_topic(name)
        (ref,) = channel["messages"].values()
        headers = _resolve(doc, ref)["headers"]
        expected = {
            "error.reason",
            "error.service",
            "original.topic",
            "original.partition",
            "original.offset",
        }
        assert set(headers["required"]) == expected
        assert set(headers["properties"]) == expected
    assert set(doc["channels"]) == set(TOPICS) | {dlq_topic(name) for name in TOPICS}


def test_every_event_type_has_a_message(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    assert set(EVENT_TYPES) <= set(messages)
    assert set(messages) - set(EVENT_TYPES) == {asyncapi.DLQ_MESSAGE}
    for event_type in EVENT_TYPES:
        message = messages[event_type]
        assert message["name"] == event_type
        assert message["title"] and message["contentType"] == "application/json"
        key = message["bindings"]["kafka"]["key"]
        assert key["type"] == "string"
        spec = TOPICS[next(t for t, s in TOPICS.items() if event_type in s.event_types)]
        if spec.key == "business-day":
            assert key["const"] == BUSINESS_DAY_KEY


def test_message_payload_is_the_envelope(doc: dict[str, Any]) -> None:
    for event_type, envelope in ENVELOPES.items():
        payload = doc["components"]["messages"][event_type]["payload"]
        assert payload["type"] == "object"
        assert ENVELOPE_FIELDS <= set(payload["required"])
        assert set(payload["properties"]) == set(envelope.model_fields)
        assert payload["properties"]["type"]["const"] == event_type
        # tolerant reader (contract section 2): consumers ignore unknown fields
        assert payload["additionalProperties"] is True
        data = _resolve(doc, payload["properties"]["data"])
        assert data["title"] == EVENT_TYPES[event_type].__name__
        assert data["additionalProperties"] is True
        assert "Tolerant reader" in data["description"]


def test_every_ref_resolves_and_no_defs_are_left(doc: dict[str, Any]) -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            assert "$defs" not in node
            if "$ref" in node:
                _resolve(doc, node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)


def test_money_is_a_string_in_the_schemas(doc: dict[str, Any]) -> None:
    purchase = doc["components"]["schemas"]["PurchasePosted"]
    assert purchase["properties"]["amount"]["type"] == "string"


# ------------------------------------------------------------------ operations


def _operations(doc: dict[str, Any], action: str) -> set[tuple[str, str]]:
    """(actor, channel address) of every operation with ``action``."""
    found = set()
    for operation in doc["operations"].values():
        if operation["action"] == action:
            (tag,) = operation["tags"]
            channel = _resolve(doc, operation["channel"])
            found.add((tag["name"], channel["address"]))
            channel_messages = [r["$ref"] for r in channel["messages"].values()]
            for ref in operation["messages"]:
                assert ref["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")
                assert _resolve(doc, ref)["$ref"] in channel_messages
    return found


def test_every_channel_and_key_states_the_partitioner(doc: dict[str, Any]) -> None:
    """#15: the document says how producers partition (contract section 2), per channel
    (``x-partitioner``, description) and on every message's Kafka key binding."""
    assert "murmur2_random" in doc["info"]["description"]
    for name, channel in doc["channels"].items():
        assert channel["x-partitioner"] == "murmur2", name
        assert "murmur2" in channel["description"], name
    for event_type in EVENT_TYPES:
        key = doc["components"]["messages"][event_type]["bindings"]["kafka"]["key"]
        assert "murmur2 of the key" in key["description"], event_type
        assert "murmur2_random" in key["description"], event_type


def test_producers_send_and_consumers_receive(doc: dict[str, Any]) -> None:
    sends = _operations(doc, "send")
    for name, spec in TOPICS.items():
        assert (spec.producer, name) in sends
    receives = _operations(doc, "receive")
    expected = {(actor, t) for actor, topics in asyncapi.CONSUMERS.items() for t in topics}
    assert receives == expected
    assert ("collections-team", "collections.escalations.v1") in receives
    assert ("notification-gateway", "reminders.outbound.v1") in receives


def test_services_dead_letter_what_they_consume(doc: dict[str, Any]) -> None:
    sends = _operations(doc, "send")
    for service in SERVICE_NAMES:
        for topic in asyncapi.CONSUMERS[service]:
            assert (service, dlq_topic(topic)) in sends


def test_consumers_of_the_services_match_their_code() -> None:
    assert set(asyncapi.SERVICES) == set(SERVICE_NAMES)
    for name in SERVICE_NAMES:
        consumed = consumed_topics(Settings(environment="test"), name)
        assert sorted(asyncapi.CONSUMERS[name]) == sorted(consumed), name


def test_service_receive_operations_name_the_consumer_group(doc: dict[str, Any]) -> None:
    for operation in doc["operations"].values():
        (tag,) = operation["tags"]
        if operation["action"] == "receive" and tag["name"] in SERVICE_NAMES:
            group = operation["bindings"]["kafka"]["groupId"]
            assert group["enum"] == [f"installments-{tag['name']}"]


# ------------------------------------------------------------------ payloads validate


def test_example_events_validate_against_the_message_payloads(doc: dict[str, Any]) -> None:
    import jsonschema  # a dev dependency: this test must run, not skip

    for event_type in EVENT_TYPES:
        schema = {
            "$ref": f"#/components/messages/{event_type}/payload",
            "components": doc["components"],
        }
        validator = jsonschema.Draft7Validator(schema)
        message = examples.envelope(event_type)
        assert not list(validator.iter_errors(message)), event_type
        wrong = examples.envelope(event_type, schema_version=2)
        assert list(validator.iter_errors(wrong)), event_type
    money_as_number = examples.envelope("purchase.posted")
    money_as_number["data"]["amount"] = 12.5
    validator = jsonschema.Draft7Validator(
        {"$ref": "#/components/messages/purchase.posted/payload", "components": doc["components"]}
    )
    assert list(validator.iter_errors(money_as_number))
