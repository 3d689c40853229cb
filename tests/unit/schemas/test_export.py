"""The committed JSON Schemas in schemas/json/ match the code."""

from __future__ import annotations

import json
from pathlib import Path

from schemas import export


def test_committed_json_schemas_do_not_drift(capsys) -> None:  # type: ignore[no-untyped-def]
    code = export.main(["--check"])
    assert code == 0, capsys.readouterr().err


def test_check_reports_drift(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert export.main(["--dir", str(tmp_path)]) == 0
    assert export.main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "purchase.posted.json").write_text("{}\n")
    (tmp_path / "old.event.json").write_text("{}\n")
    (tmp_path / "topics.json").unlink()
    capsys.readouterr()
    assert export.main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "differs:" in err and "purchase.posted.json" in err
    assert "stale:" in err and "old.event.json" in err
    assert "missing:" in err and "topics.json" in err


def test_schema_documents_the_envelope_and_payload() -> None:
    schema = json.loads((export.JSON_DIR / "purchase.posted.json").read_text())
    assert schema["properties"]["type"]["const"] == "purchase.posted"
    assert schema["properties"]["time"]["format"] == "date-time"
    payload = schema["$defs"]["PurchasePosted"]
    # tolerant reader (contract section 2): unknown fields allowed, and said so
    assert payload["additionalProperties"] is True
    assert schema["additionalProperties"] is True
    assert "Tolerant reader" in payload["description"]
    assert payload["properties"]["amount"]["type"] == "string"
