"""`installments dlq redrive --confirm`: only known confirmations, checked before Kafka."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from schemas import business_days
from shared.cli import app
from shared.ops import dlq as ops
from shared.runtime.settings import Settings


def test_the_header_is_the_one_the_services_read():
    assert ops.CONFIRM_HEADER == business_days.CONFIRM_HEADER  # one definition, re-used
    assert business_days.CONFIRM_BUSINESS_DATE_JUMP in ops.CONFIRMABLE


def test_an_unknown_confirmation_is_refused_before_anything_is_read():
    with pytest.raises(ValueError, match="--confirm must be one of business_date_jump"):
        ops.redrive(Settings(environment="test"), None, dry_run=True, reason_contains=None,
                    limit=None, confirm="anything")  # fmt: skip


def test_the_cli_refuses_an_unknown_confirmation():
    result = CliRunner().invoke(app, ["dlq", "redrive", "--confirm", "anything"])
    assert result.exit_code != 0
    assert "business_date_jump" in result.output
