"""The policy file loader shared by the services: sections, defaults, clear errors."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.runtime.policy import load_section, policy_section


class ExamplePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rate: Decimal = Decimal("0.01")
    days: int = 7


def test_no_file_gives_the_defaults():
    assert load_section(ExamplePolicy, None, "example") == ExamplePolicy()


@pytest.mark.parametrize("text", ["", "other:\n  x: 1\n", "example:\n"])
def test_empty_file_or_no_section_gives_the_defaults(tmp_path, text):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    assert load_section(ExamplePolicy, path, "example") == ExamplePolicy()


def test_keys_in_the_section_override_the_defaults_one_by_one(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text('example:\n  rate: "0.05"\nother:\n  days: 1\n')
    assert load_section(ExamplePolicy, path, "example") == ExamplePolicy(rate=Decimal("0.05"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a list\n", "must be a YAML mapping of sections"),
        ("example: [1, 2]\n", "section 'example' must be a mapping"),
    ],
)
def test_a_file_or_section_that_is_not_a_mapping_is_refused(tmp_path, text, message):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        policy_section(path, "example")


def test_unknown_keys_and_bad_values_are_refused(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("example:\n  dayz: 3\n")
    with pytest.raises(ValidationError, match="dayz"):
        load_section(ExamplePolicy, path, "example")
    path.write_text("example:\n  days: soon\n")
    with pytest.raises(ValidationError, match="days"):
        load_section(ExamplePolicy, path, "example")
