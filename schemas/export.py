"""Write (or check) the JSON Schemas of the contract in ``schemas/json/``.

``python -m schemas.export`` writes:

- ``schemas/json/<event-type>.json``: the JSON Schema of the whole message (envelope
  with that payload in ``data``), from ``model_json_schema()``;
- ``schemas/json/topics.json``: the topic registry (producer, key, compaction, event
  types, dead-letter topic) and which topic each event type goes to.

``python -m schemas.export --check`` writes nothing and exits 1, listing the files that
are missing, differ or are stale, when the committed files drift from the code.
Files are JSON with sorted keys, 2-space indent and a final newline, so they diff well.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from schemas.registry import ENVELOPES, TOPICS, dlq_topic, topic_for

__all__ = ["JSON_DIR", "render", "drift", "main"]

JSON_DIR = Path(__file__).resolve().parent / "json"


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


#: The JSON Schema dialect pydantic writes, and the base of each schema's ``$id``.
DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "urn:card-installments:schema:"


def _identified(event_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``$schema`` (its dialect) and a stable ``$id`` (validators and
    registries refer to it; the version is the envelope's ``schema_version``)."""
    return {"$schema": DIALECT, "$id": f"{ID_BASE}{event_type}:v1", **schema}


def render() -> dict[str, str]:
    """File name -> content of every file the export owns."""
    files = {
        f"{event_type}.json": _dump(_identified(event_type, envelope.model_json_schema()))
        for event_type, envelope in ENVELOPES.items()
    }
    files["topics.json"] = _dump(
        {
            "topics": {
                name: {
                    "producer": spec.producer,
                    "key": spec.key,
                    "compacted": spec.compacted,
                    "event_types": sorted(spec.event_types),
                    "dlq": dlq_topic(name),
                }
                for name, spec in TOPICS.items()
            },
            "event_types": {event_type: topic_for(event_type) for event_type in ENVELOPES},
        }
    )
    return files


def drift(directory: Path = JSON_DIR) -> list[str]:
    """Human-readable lines for every file in ``directory`` that differs from :func:`render`."""
    expected = render()
    problems = []
    for name, content in sorted(expected.items()):
        path = directory / name
        if not path.exists():
            problems.append(f"missing: {path}")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"differs: {path}")
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            if path.name not in expected:
                problems.append(f"stale: {path}")
    return problems


def write(directory: Path = JSON_DIR) -> list[Path]:
    """Write every file (and delete stale ``*.json``); return the paths changed."""
    directory.mkdir(parents=True, exist_ok=True)
    expected = render()
    changed = []
    for name, content in expected.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            changed.append(path)
    for path in directory.glob("*.json"):
        if path.name not in expected:
            path.unlink()
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if the files drift from the code"
    )
    parser.add_argument("--dir", type=Path, default=JSON_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check:
        problems = drift(args.dir)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(
                "JSON Schemas drift from schemas/: run `python -m schemas.export`", file=sys.stderr
            )
            return 1
        print(f"{len(render())} JSON Schema files are up to date")
        return 0
    changed = write(args.dir)
    print(f"wrote {len(changed)} changed file(s) in {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
