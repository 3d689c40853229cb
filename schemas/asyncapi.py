"""Write (or check) the AsyncAPI 3.0 document of the contract: ``schemas/asyncapi.yaml``.

``python -m schemas.asyncapi`` builds the document from the code alone:

- ``channels``: one per topic of :data:`schemas.registry.TOPICS` (address = topic
  name; messages = its event types; producer, key rule, partitioner and compaction in
  the description, ``x-partitioner`` and the Kafka binding), plus one ``<topic>.dlq``
  per topic (the dead-letter message with its ``error.*`` / ``original.*`` headers);
  each message's Kafka ``key`` binding names the key and the partitioner;
- ``operations``: ``send`` for each topic's producer, ``receive`` for each consumer
  (:data:`CONSUMERS`), ``send`` to ``<topic>.dlq`` for each service that consumes
  ``<topic>``;
- ``components.messages``: one per event type, whose payload is the JSON Schema of
  the whole envelope (``model_json_schema()`` of its :data:`schemas.registry.ENVELOPES`
  class, as :mod:`schemas.export` writes it), with the nested models hoisted into
  ``components.schemas`` (``$ref: '#/components/schemas/<Model>'``).

``python -m schemas.asyncapi --check`` writes nothing and exits 1 when the committed
file drifts from the code. The output is deterministic: registry order for topics and
event types, sorted names elsewhere, no timestamps.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from schemas.codec import MAX_DEPTH
from schemas.registry import (
    BUSINESS_DAY_KEY,
    ENVELOPES,
    EVENT_TYPES,
    TOPICS,
    consumer_group,
    dlq_topic,
    topic_for,
)
from schemas.types import SCHEMA_VERSION

__all__ = [
    "ASYNCAPI_PATH",
    "CONSUMERS",
    "SERVICES",
    "DLQ_HEADERS",
    "DLQ_MESSAGE",
    "PARTITIONER",
    "PARTITIONING",
    "document",
    "render",
    "drift",
    "main",
]

ASYNCAPI_PATH = Path(__file__).resolve().parent / "asyncapi.yaml"

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"

#: The pipeline's own services (consumer group ``installments-<name>``; they dead-letter).
SERVICES = ("purchases", "offers", "points", "reminders", "collections")

#: Who reads each topic: consumer -> topics, in the order the consumer lists them.
#: The services' lists are their ``Service.consumes`` (a test keeps them equal).
CONSUMERS: dict[str, tuple[str, ...]] = {
    "purchases": ("card.purchases.v1",),
    "offers": (
        "purchases.recorded.v1",
        "card.accounts.v1",
        "installments.decisions.v1",
        "card.payments.v1",
        "card.business-days.v1",
        "points.ledger.v1",
        "fraud.reviews.v1",
    ),
    "points": ("purchases.recorded.v1", "card.accounts.v1", "installments.plans.v1"),
    "reminders": ("installments.plans.v1", "card.accounts.v1", "card.business-days.v1"),
    "collections": ("installments.plans.v1", "collections.outcomes.v1"),
    "collections-team": ("collections.escalations.v1",),
    "fraud-team": ("purchases.recorded.v1",),
    "notification-gateway": ("reminders.outbound.v1",),
}

#: Every actor, for the document's tags (producers as named in envelope ``source``).
ACTORS: dict[str, str] = {
    "card-system": "The card transaction system (outside the project): accounts, purchases "
    "and refunds, payments, end of business day.",
    "customer-channel": "The customer app (outside the project): offer decisions.",
    "fraud-team": "The fraud team's tools (outside the project): read flagged purchases "
    "(`purchase.flagged`), close reviews (`purchase.review-closed`).",
    "purchases": "Service: validates and records purchases and refunds.",
    "offers": "Service: installment offers, plans and schedules, payments, end of day, "
    "fee waivers.",
    "points": "Service: loyalty points accrual, reversal and redemption against fees.",
    "reminders": "Service: repayment reminders before each due date.",
    "collections": "Service: overdue escalations (days-past-due ladder, cure, charge-off).",
    "collections-team": "The collections team's tools (outside the project): read "
    "escalations and promise outcomes, record contact outcomes (`contact.recorded`).",
    "notification-gateway": "The customer notification gateway (outside the project).",
}

#: The headers of a dead-lettered message (values are UTF-8 strings).
DLQ_HEADERS: dict[str, dict[str, Any]] = {
    "error.reason": {
        "type": "string",
        "maxLength": 500,
        "description": "Why the message was refused (human readable; card numbers, phones "
        "and e-mails are masked).",
    },
    "error.service": {
        "type": "string",
        "enum": list(SERVICES),
        "description": "The service that refused the message.",
    },
    "original.topic": {
        "type": "string",
        "description": "The contract name of the topic the message was read from "
        "(re-drive: publish the value unchanged there).",
    },
    "original.partition": {
        "type": "string",
        "pattern": "^[0-9]+$",
        "description": "Its partition, as a decimal string.",
    },
    "original.offset": {
        "type": "string",
        "pattern": "^[0-9]+$",
        "description": "Its offset, as a decimal string.",
    },
}

#: The component name of the dead-letter message.
DLQ_MESSAGE = "dead-letter"

#: The partitioner producers use (contract section 2), as each channel's
#: ``x-partitioner``: murmur2 of the key's bytes, the Kafka Java client's default.
PARTITIONER = "murmur2"

#: What a producer must know about partitioning (channels and message keys say it).
PARTITIONING = (
    "Partitioner: murmur2 of the key's UTF-8 bytes (positive hash modulo the partition "
    "count), the Kafka Java client's default and kafka-python's; librdkafka clients "
    "(kcat, confluent-kafka) set `partitioner=murmur2_random`. Another partitioner that "
    "maps one key to one partition keeps an account's events in order and costs speed, "
    "never a wrong or double effect."
)

_KEY_RULES = {
    "account": "the account id (equal to the envelope `subject`, and to `data.account_id` "
    "where the payload has one)",
    "business-day": f"the literal `{BUSINESS_DAY_KEY}` (also the envelope `subject`)",
}

_DESCRIPTION = f"""\
The event contract of the credit-card installment pipeline: what the card system and
the customer channel publish, what the five services (purchases, offers, points,
reminders, collections) consume and emit, and who reads the results.

**Envelope.** Every message value is one JSON object (UTF-8):
`{{id, type, source, time, subject, schema_version, correlation_id, causation_id, data}}`.
`id` is a UUID (emitted ids are deterministic: derived from the cause's id and the rule
that fired, so a replay re-emits the same ids); `type` is the event type and fixes the
schema of `data`; `source` is the producer (`card-system`, `customer-channel` or a
service name); `time` is RFC 3339 (written in UTC with `Z`); `schema_version` is
{SCHEMA_VERSION} (consumers read 1 to {SCHEMA_VERSION}); `correlation_id` and
`causation_id` are optional.

**Keys.** The Kafka key is the account id, which equals the envelope `subject` (and
`data.account_id` where the payload has one), so every account's events stay in order
on one partition; on `card.business-days.v1` the key and subject are the literal
`{BUSINESS_DAY_KEY}`.

**Partitioning.** Producers partition by murmur2 of the key (the Kafka Java client's
default partitioner, as kafka-python does; every channel says so in `x-partitioner`);
librdkafka-based clients (kcat, confluent-kafka) must set
`partitioner=murmur2_random`. The services keep their state per account in the
database, so a producer that partitions differently (but still maps one key to one
partition) may cost speed, never correctness.

**Money** is a JSON string holding a decimal with at most the currency's ISO 4217
minor-unit digits (`"1234.50"` in EUR, `"1500"` in JPY), next to a `currency` field;
a JSON number is never accepted for money. Each payload's schema checks the digits
against its `currency` (`allOf` of `if`/`then` rules), and the positive amounts
(purchases, payments, principals, installments) are above zero, so a schema-valid
amount is one the services accept. Rates (`apr`, `monthly_fee_rate`) are decimal
strings too.

**Tolerant reader.** Producers evolve by adding optional fields, so consumers ignore
fields they do not know, in the envelope and anywhere in `data`: a message is never
refused for an unknown field, and every schema here allows additional properties.
The project's own producers write exactly the fields listed. Unknown fields still
count: any string (or integer) that looks like a card number (a PAN: 13 to 19
digits, optionally grouped by single spaces or dashes, passing the Luhn check) is
rejected wherever it appears, unknown fields included, and messages above 64 KiB
(`INSTALLMENTS_MAX_MESSAGE_BYTES`, measured on the raw bytes) are rejected with
reason `too_large`. A `schema_version` higher than the consumer supports
({SCHEMA_VERSION}) is refused with reason `unsupported_schema_version`. Fields the
contract does list are strict: unknown currencies, money as a JSON number, wrong
types are rejected, as is JSON nested deeper than {MAX_DEPTH} levels. A refused
message goes to `<topic>.dlq` unchanged, with headers saying who refused it, why,
and where it came from; it never blocks its partition.

Topic names here are the contract names; a deployment may prefix every topic and
consumer group (`INSTALLMENTS_TOPIC_PREFIX`, empty in production).

Generated by `python -m schemas.asyncapi` from `schemas/` (do not edit by hand).
"""

_HEADER = "# Generated by `python -m schemas.asyncapi` from schemas/: do not edit by hand.\n"


def _consumers_of(topic: str) -> list[str]:
    return [actor for actor, topics in CONSUMERS.items() if topic in topics]


def _kafka(binding: dict[str, Any]) -> dict[str, Any]:
    return {"kafka": {**binding, "bindingVersion": KAFKA_BINDING_VERSION}}


def _ref(*parts: str) -> dict[str, str]:
    """A JSON pointer ``$ref`` (``~`` and ``/`` escaped as RFC 6901 says)."""
    escaped = (part.replace("~", "~0").replace("/", "~1") for part in parts)
    return {"$ref": "#/" + "/".join(escaped)}


def _message_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """(event type -> message object, model name -> schema hoisted from ``$defs``)."""
    messages: dict[str, Any] = {}
    hoisted: dict[str, Any] = {}
    for event_type, envelope in ENVELOPES.items():
        schema = envelope.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            if hoisted.setdefault(name, definition) != definition:
                raise RuntimeError(f"two different models are named {name!r}")
        payload_cls = EVENT_TYPES[event_type]
        spec = TOPICS[topic_for(event_type)]
        if spec.key == "business-day":
            key: dict[str, Any] = {"type": "string", "const": BUSINESS_DAY_KEY}
        else:
            key = dict(schema["properties"]["subject"])
            key.pop("title", None)
        key["description"] = f"The Kafka key: {_KEY_RULES[spec.key]}. {PARTITIONING}"
        doc = (payload_cls.__doc__ or "").strip()
        messages[event_type] = {
            "name": event_type,
            "title": payload_cls.__name__,
            "summary": doc.splitlines()[0].strip().replace("``", "`") if doc else event_type,
            "contentType": "application/json",
            "bindings": _kafka({"key": key}),
            "payload": schema,
        }
    return messages, dict(sorted(hoisted.items()))


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": DLQ_MESSAGE,
        "title": "Dead letter",
        "summary": "A message a service refused, unchanged, with why and where it came from.",
        "description": "The value is the original message's bytes (it may not be valid JSON "
        "or UTF-8) and the key its original key. Fix the cause, then re-publish the value "
        "to `original.topic` with the same key: the consumer's inbox makes a re-drive of an "
        "already-applied event harmless.",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": list(DLQ_HEADERS),
            "properties": DLQ_HEADERS,
        },
        "bindings": _kafka(
            {"key": {"type": ["string", "null"], "description": "The original message's key."}}
        ),
        "payload": {
            "type": "string",
            "format": "binary",
            "description": "The original message value, byte for byte.",
        },
    }


def _channels() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    for name, spec in TOPICS.items():
        consumers = _consumers_of(name)
        lines = [
            f"Producer: {spec.producer}.",
            f"Consumers: {', '.join(consumers) if consumers else 'none in the contract'}.",
            f"Key: {_KEY_RULES[spec.key]}.",
            "Compacted (`cleanup.policy=compact`): the latest event per key is kept."
            if spec.compacted
            else "Not compacted (`cleanup.policy=delete`).",
            f"Refused messages go to `{dlq_topic(name)}`.",
            PARTITIONING,
        ]
        channels[name] = {
            "address": name,
            "title": name,
            "summary": f"{', '.join(_in_order(spec))} (from {spec.producer})",
            "description": "\n".join(lines),
            "x-partitioner": PARTITIONER,
            "messages": {t: _ref("components", "messages", t) for t in _in_order(spec)},
            "bindings": _kafka(
                {
                    "topicConfiguration": {
                        "cleanup.policy": ["compact" if spec.compacted else "delete"]
                    }
                }
            ),
        }
    for name in TOPICS:
        writers = [s for s in SERVICES if name in CONSUMERS[s]]
        dlq = dlq_topic(name)
        channels[dlq] = {
            "address": dlq,
            "title": dlq,
            "summary": f"Messages of {name} that a service refused.",
            "description": (
                f"Written by: {', '.join(writers)}."
                if writers
                else f"No pipeline service consumes {name}; created with it by "
                "`installments topics`."
            )
            + f" Headers `original.topic` = `{name}`, `error.service`, `error.reason`, "
            "`original.partition`, `original.offset`. Keyed by the original key, "
            "partitioned by murmur2 like every topic.",
            "x-partitioner": PARTITIONER,
            "messages": {DLQ_MESSAGE: _ref("components", "messages", DLQ_MESSAGE)},
            "bindings": _kafka({"topicConfiguration": {"cleanup.policy": ["delete"]}}),
        }
    return channels


def _in_order(spec: Any) -> list[str]:
    """A topic's event types in registry (contract) order."""
    return [t for t in EVENT_TYPES if t in spec.event_types]


def _operation(actor: str, action: str, channel: str, messages: list[str]) -> dict[str, Any]:
    verb = "publishes to" if action == "send" else "consumes"
    operation: dict[str, Any] = {
        "action": action,
        "channel": _ref("channels", channel),
        "title": f"{actor} {verb} {channel}",
        "tags": [{"name": actor}],
        "messages": [_ref("channels", channel, "messages", m) for m in messages],
    }
    if action == "receive" and actor in SERVICES:
        operation["summary"] = (
            f"Consumer group `{consumer_group(actor)}`; event types it has no handler for are"
            " skipped."
        )
        operation["bindings"] = _kafka(
            {"groupId": {"type": "string", "enum": [consumer_group(actor)]}}
        )
    return operation


def _operations() -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for name, spec in TOPICS.items():
        operations[f"{spec.producer}.send.{name}"] = _operation(
            spec.producer, "send", name, _in_order(spec)
        )
    for actor, topics in CONSUMERS.items():
        for name in topics:
            operations[f"{actor}.receive.{name}"] = _operation(
                actor, "receive", name, _in_order(TOPICS[name])
            )
    for actor in SERVICES:
        for name in CONSUMERS[actor]:
            dlq = dlq_topic(name)
            operations[f"{actor}.send.{dlq}"] = _operation(actor, "send", dlq, [DLQ_MESSAGE])
    return operations


def document() -> dict[str, Any]:
    """The AsyncAPI document as plain data."""
    unknown = {t for topics in CONSUMERS.values() for t in topics} - set(TOPICS)
    if unknown:
        raise RuntimeError(f"CONSUMERS names unknown topics: {sorted(unknown)}")
    messages, schemas = _message_schemas()
    messages[DLQ_MESSAGE] = _dead_letter_message()
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Card installments pipeline events",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": _DESCRIPTION,
            "tags": [{"name": actor, "description": text} for actor, text in ACTORS.items()],
        },
        "defaultContentType": "application/json",
        "servers": {
            "production": {
                "host": "kafka.example.com:9093",
                "protocol": "kafka",
                "title": "Production brokers (placeholder)",
                "description": "Placeholder: the brokers are whatever "
                "`KAFKA_BOOTSTRAP_SERVERS` names. In production PLAINTEXT is refused: set "
                "`INSTALLMENTS_KAFKA_SECURITY_PROTOCOL` (SSL, SASL_SSL, ...) and the SASL "
                "settings.",
            }
        },
        "channels": _channels(),
        "operations": _operations(),
        "components": {"schemas": schemas, "messages": messages},
    }


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as ``|`` blocks, no anchors or aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = (
        "|"
        if "\n" in value and not any(line != line.rstrip() for line in value.split("\n"))
        else None
    )
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def render() -> str:
    """The text of ``schemas/asyncapi.yaml``."""
    return _HEADER + yaml.dump(
        document(),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )


def drift(path: Path = ASYNCAPI_PATH) -> list[str]:
    """Human-readable lines when ``path`` differs from :func:`render` (empty: up to date)."""
    if not path.exists():
        return [f"missing: {path}"]
    if path.read_text(encoding="utf-8") != render():
        return [f"differs: {path}"]
    return []


def write(path: Path = ASYNCAPI_PATH) -> bool:
    """Write the document; return whether the file changed."""
    content = render()
    if path.exists() and path.read_text(encoding="utf-8") == content:
        return False
    path.write_text(content, encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.asyncapi",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if the file drifts from the code"
    )
    parser.add_argument("--out", type=Path, default=ASYNCAPI_PATH, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check:
        problems = drift(args.out)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(
                "AsyncAPI document drifts from schemas/: run `python -m schemas.asyncapi`",
                file=sys.stderr,
            )
            return 1
        print(f"{args.out.name} is up to date")
        return 0
    changed = write(args.out)
    print(f"{'wrote' if changed else 'unchanged:'} {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
