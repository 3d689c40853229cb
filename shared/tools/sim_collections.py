"""The simulator's collections team (contract 4.1 / 5.1, "Contact outcomes and promises
to pay"): it reads the cases the collections service raises and records what its agents
hear on ``collections.outcomes.v1`` (``contact.recorded``).

- Each ``escalation.raised`` is read once (delivery is at least once: dedupe by event
  id); each ``escalation.resolved`` closes its case for good: no contact is ever recorded
  for a resolved case.
- The day after a case is raised (at one or more levels), the team may call: ``reached``,
  ``no_answer``, a ``promise_to_pay`` (the overdue amount, a few days ahead), or a
  ``dispute``. While the team believes a case is held (a promise not yet decided, a
  dispute not yet resolved) it records no new promise or dispute on it.
- A promise is either kept (the customer pays the promised amount on the promised date,
  unless the case was resolved by then: an owed payment is added to what the customer
  pays that day) or broken (nothing more is paid).
- Some disputes are resolved later (``dispute_resolved``), if the case is still open.

Every choice comes from the team's own random streams (seed, what, whom), so the other
actors' choices stay as they were; contact ids are derived from the seed and the fact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from shared.tools.sim_world import SimWorld, _money, _ts

#: The first release's outcomes the team records when it neither promises nor disputes.
PLAIN_OUTCOMES = ("reached", "no_answer")


@dataclass
class Case:
    """What the team knows of a case: its account and its latest raise."""

    account_id: str
    overdue_amount: Decimal
    currency: str
    raised_on: date
    held_until: date | None = None  # the team's view: no new promise / dispute before
    promised_amount: Decimal = Decimal(0)  # of the latest promise


class CollectionsTeam(SimWorld):
    """Works the collections cases: contacts, promises to pay, disputes."""

    def _team_state(self) -> None:
        """The team's memory (set up lazily, so a simulator built without a broker works)."""
        if not hasattr(self, "cases"):
            self.cases: dict[str, Case] = {}
            self.resolved_cases: set[str] = set()
            self.escalations_seen: set[str] = set()
            self.to_call: dict[str, date] = {}  # case id -> the business date it was raised
            self.dispute_ends: dict[date, list[tuple[str, str]]] = {}  # -> (case, contact)
            self.promised: dict[date, list[str]] = {}  # promised date -> cases that will pay

    def read_cases(self) -> None:
        """Read the new escalations (once each) and note the resolved cases."""
        self._team_state()
        for event in self._drain(self._escalations, "collections.escalations.v1"):
            if event.id in self.escalations_seen:
                continue
            self.escalations_seen.add(event.id)
            d = event.data
            if event.type == "escalation.resolved":
                self.resolved_cases.add(d.case_id)
                self.to_call.pop(d.case_id, None)
            elif event.type == "escalation.raised" and d.case_id not in self.resolved_cases:
                case = self.cases.get(d.case_id)
                if case is None:
                    case = self.cases[d.case_id] = Case(
                        d.account_id, d.overdue_amount, d.currency, d.business_date
                    )
                case.overdue_amount, case.raised_on = d.overdue_amount, d.business_date
                self.to_call[d.case_id] = d.business_date
            elif event.type in ("promise.kept", "promise.broken") and d.case_id in self.cases:
                self.cases[d.case_id].held_until = None  # decided: the hold is over

    def work_cases(self, day: date) -> None:
        """The day's contacts: the cases raised before today, and disputes resolved."""
        self._team_state()
        self.read_cases()
        for case_id, contact_id in self.dispute_ends.pop(day, []):
            if case_id in self.resolved_cases:
                continue
            self.cases[case_id].held_until = None
            self._contact(
                case_id, self.cases[case_id], day, "dispute_resolved", ("resolved", contact_id)
            )
        for case_id in self.promised.pop(day, []):
            if case_id not in self.resolved_cases:  # a cured case is owed nothing more
                case = self.cases[case_id]
                self.dues[case.account_id].append((day, case.promised_amount))
        for case_id in sorted(self.to_call):
            raised_on = self.to_call[case_id]
            if raised_on >= day:
                continue  # raised at a close not before today's date: tomorrow
            del self.to_call[case_id]
            self._call(case_id, self.cases[case_id], day)

    def _call(self, case_id: str, case: Case, day: date) -> None:
        c = self.c
        rng = self._rng("contact", case_id, day)
        if rng.random() >= c.contact_rate:
            return
        roll = rng.random()
        held = case.held_until is not None and case.held_until >= day
        if not held and roll < c.promise_share:
            self._promise(case_id, case, day, rng)
        elif not held and roll < c.promise_share + c.dispute_share:
            contact_id = self._contact(case_id, case, day, "dispute", ())
            case.held_until = day + timedelta(days=30)
            if rng.random() < c.dispute_resolve_rate:
                on = day + timedelta(days=rng.randint(4, 20))
                self.dispute_ends.setdefault(on, []).append((case_id, contact_id))
        else:
            self._contact(case_id, case, day, rng.choice(PLAIN_OUTCOMES), ())

    def _promise(self, case_id: str, case: Case, day: date, rng: Any) -> None:
        promised_date = day + timedelta(days=rng.randint(2, 10))
        keep = rng.random() < self.c.promise_keep_rate
        self._contact(
            case_id,
            case,
            day,
            "promise_to_pay",
            (),
            promise={
                "promised_amount": _money(case.overdue_amount),
                "currency": case.currency,
                "promised_date": promised_date.isoformat(),
            },
        )
        case.held_until = promised_date + timedelta(days=3)
        case.promised_amount = case.overdue_amount
        if keep:  # the customer pays what was promised, on the promised date
            self.promised.setdefault(promised_date, []).append(case_id)
        self.stats.promises["to_keep" if keep else "to_break"] += 1

    def _contact(
        self,
        case_id: str,
        case: Case,
        day: date,
        outcome: str,
        fact: tuple[object, ...],
        promise: dict[str, str] | None = None,
    ) -> str:
        contact_id = self._ref("contact", case_id, day, outcome, *fact)
        agent = self._rng("agent", case_id)  # a case stays with its agent
        data: dict[str, Any] = {
            "contact_id": contact_id,
            "case_id": case_id,
            "account_id": case.account_id,
            "outcome": outcome,
            "contacted_on": day.isoformat(),
            "agent_ref": f"agent-{agent.randint(1, 24):02d}",
            **(promise or {}),
        }
        self._send(
            "collections.outcomes.v1",
            "contact.recorded",
            case.account_id,
            data,
            _ts(day, 11 * 3600),
            (contact_id,),
            source="collections-team",
        )
        self.stats.contacts[outcome] += 1
        return contact_id
