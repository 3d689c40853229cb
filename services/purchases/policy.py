"""Purchases policy: the numbers of fraud and velocity screening (CONTRACT §5.1 "Fraud and
velocity screening").

Defaults are the contract's. Override in the policy file (``INSTALLMENTS_POLICY_FILE``,
YAML), section ``purchases``::

    purchases:
      velocity_window_minutes: 10     # a card's purchases within this long of posted_at
      velocity_count: 5               # ... the 5th or later is flagged ``velocity``
      spike_min_amount: "5000.00"     # amount_spike: amount >= this
      spike_factor: "10"              # ... and >= factor x the median of the history
      spike_history: 20               # the account's last N recorded purchases
      spike_min_history: 5            # ... at least this many of them, else no spike
      cnp_min_amount: "10000.00"      # cnp_new_merchant: amount >= this
      cnp_channels: [ecommerce, moto] # ... on these channels, at a merchant never seen

The window and the history size also bound the screening state the service keeps
(``tables.py``): a card's purchase times of the last window, an account's last
``spike_history`` amounts. Unknown keys are rejected.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.runtime.policy import load_section

SECTION = "purchases"


class PurchasesPolicy(BaseModel):
    """The numbers behind the three screening rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    velocity_window_minutes: int = Field(default=10, ge=1, le=7 * 24 * 60)
    velocity_count: int = Field(default=5, ge=1)
    spike_min_amount: Decimal = Field(default=Decimal("5000.00"), ge=0)
    spike_factor: Decimal = Field(default=Decimal("10"), ge=0)
    spike_history: int = Field(default=20, ge=1, le=1000)
    spike_min_history: int = Field(default=5, ge=1)
    cnp_min_amount: Decimal = Field(default=Decimal("10000.00"), ge=0)
    cnp_channels: frozenset[str] = frozenset({"ecommerce", "moto"})

    @model_validator(mode="after")
    def _consistent(self) -> PurchasesPolicy:
        if self.spike_min_history > self.spike_history:
            raise ValueError("spike_min_history cannot exceed spike_history")
        unknown = self.cnp_channels - {"pos", "ecommerce", "moto"}
        if unknown:
            raise ValueError(f"cnp_channels: unknown channel(s) {sorted(unknown)}")
        return self


DEFAULT_POLICY = PurchasesPolicy()


def load_policy(path: str | Path | None) -> PurchasesPolicy:
    """The policy from the ``purchases`` section of the YAML file at ``path`` (``None``, an
    empty file or no such section: the contract's defaults)."""
    return load_section(PurchasesPolicy, path, SECTION)
