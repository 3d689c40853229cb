"""The whole-run log scan finds what it must, and nothing in clean logs."""

import json
import tempfile
from pathlib import Path

from tests.log_scan import find_personal_data, scan_log_files


def test_finds_a_card_number_an_email_and_a_phone_number():
    text = "paid with 4111 1111 1111 1111; mail jane@example.com; call +44 20 7946 0958"
    kinds = [f.split(": ")[1].split(" (")[0] for f in find_personal_data(text, "x")]
    assert kinds == ["card number", "e-mail address", "phone number"]


def test_clean_structured_logs_pass():
    line = json.dumps(
        {
            "event": "event processed",
            "timestamp": "2026-11-28T12:00:00.123456Z",
            "offset": 1234567890123,  # 13 digits, not Luhn-valid
            "event_id": "3f0c2a9e-1c3b-5d7e-9f00-0123456789ab",
            "card": "[PAN]",
        }
    )
    assert find_personal_data(line, "x") == []


def test_scans_log_files_under_a_folder():
    # not under pytest's tmp_path: the session-end scan would (rightly) find this e-mail
    with tempfile.TemporaryDirectory() as folder:
        _plant_and_scan(Path(folder))


def _plant_and_scan(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "svc.log").write_text('{"to": "bob@example.org"}\n')
    (tmp_path / "other.txt").write_text("bob@example.org")
    files, found = scan_log_files(tmp_path)
    assert files == 1 and len(found) == 1 and "svc.log" in found[0]


UUID_WITH_LUHN_DIGITS = "292fdda2-1468-5171-9076-9cab71e49196"  # "2-1468-5171-9076-9" passes


def test_event_ids_are_not_card_numbers():
    assert find_personal_data(f'{{"event_id": "{UUID_WITH_LUHN_DIGITS}"}}', "x") == []
    assert find_personal_data("card 4111-1111-1111-1111 next to " + UUID_WITH_LUHN_DIGITS, "x")


def test_kafka_data_segments_are_not_scanned():
    with tempfile.TemporaryDirectory() as folder:
        segment = Path(folder) / "00000000000000000000.log"
        segment.write_text("4111 1111 1111 1111")
        assert scan_log_files(Path(folder)) == (0, [])
