"""Collections rules (CONTRACT §5 "Collections"): plain Python, no Kafka, no SQL, no
wall clock. Every number comes from ``CollectionsPolicy`` (defaults in brackets).

* **DPD** = business date - oldest unpaid due date (0 when nothing is overdue).
* **Ladder.** The level for a DPD is the highest rung whose ``min_dpd`` it reaches
  [1 sms, 8 sms_push, 15 call, 31 letter, 61 agency, 91 legal]; 0 when current.
* **Escalation.** Per case, every level up to the DPD's level that has not been
  raised yet is raised, in order, oldest first: after an outage each crossed level is
  emitted in the same catch-up, a level is never skipped and never raised twice. A
  lower DPD later (a partial payment) raises nothing and lowers nothing.
* **Legal guard.** The legal level [6] is raised only when the overdue amount is
  >= [50,000.00] and the case has had >= [2] contacts [30] or more days apart
  (contacts chained: each one at least the gap after the previous counted one).
  Contacts (second release) are the contact actions raised on the case
  [sms, sms_push, call, letter; agency and legal are not contacts], dated their
  business date (those raised in the same catch-up included), **plus** the recorded
  contact outcomes that count [reached, no_answer, wrong_party], dated
  ``contacted_on``. Without the guard the case stays at the agency level and no level
  above the legal one is raised either (no skipping); every later end-of-day report
  re-checks it (while DPD >= 91).
* **Holds** (second release). A ``promise_to_pay`` (promised date within [30] days of
  ``contacted_on``, not before it, else refused) holds the ladder at the close of any
  business date before ``promised_date + [3]``; a ``dispute`` holds it until a
  ``dispute_resolved``, through the close of ``contacted_on + [30]`` at most. A held
  close raises no level; the first close not held raises every crossed level, in
  order. A hold never delays a cure or a charge-off.
* **Promises.** Paid towards a promise = the payments of its currency dated from
  ``contacted_on`` on. An open promise is kept as soon as that reaches the promised
  amount; the close of ``promised_date + [3]`` (or any later one) breaks an open
  promise. A promise still open when its case is resolved is void (no event).
* **Buckets** [M1 1-30, M2 31-60, M3 61-90, M4+ 91+]; none when current.
* **Cure.** A report with DPD 0 while a case is open resolves it ``cured``; a later
  delinquency opens a new case, whose id is derived from the account and the
  business date it opened on.
* **Charge-off.** DPD >= [180] resolves the open case ``charged_off``, writing off the
  account's whole outstanding balance: the overdue amount reported (principal and fees
  of the installments due before the business date, less what was paid on them) plus
  the principal not yet due of the account's open plans (unpaid installments due on
  or after the business date: offers counts an installment overdue only from the day
  after its due date, so no installment is in both). Fees not yet due are not earned
  and not written off. A charged-off case takes no further escalation; a report with
  DPD 0 then closes it silently, and a later delinquency opens a new case.
* **Adjusted plans** (second release). ``plan.adjusted`` replaces a plan's unpaid
  installments by its schedule: each listed installment's principal becomes the
  schedule's, an unpaid installment it leaves out is removed, and the plan's
  outstanding principal is then the schedule's unpaid principal
  (``follow_adjusted_schedule``). The charge-off and the reserve read that.
* **Catch-up buckets.** Every escalation raised by one report carries the bucket of that
  report's (the current) DPD, also the lower levels raised in a catch-up.
* **Risk reserve.** Outstanding principal x rate of its bucket [current 1 %, M1 5 %,
  M2 20 %, M3 50 %, M4+ 100 %], summed per bucket, rounded half-up to the minor unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

from services.collections.policy import CURRENT, DEFAULT_POLICY, CollectionsPolicy

CURED = "cured"
CHARGED_OFF = "charged_off"


class Escalation(NamedTuple):
    """A level to raise (``escalation.raised``): unpacks as ``(level, action)``."""

    level: int
    action: str


@dataclass(frozen=True)
class CaseState:
    """An account's collections case.

    ``levels_raised``: ``(level, business_date)`` pairs, in the order raised.
    ``opened_on``: the business date of the report that opened the case.
    ``charged_off``: the case was resolved ``charged_off`` (kept to block a new case
    while the account stays delinquent).
    """

    levels_raised: Sequence[tuple[int, date]]  # stored as a tuple
    opened_on: date
    charged_off: bool = False
    #: ``contacted_on`` of the recorded contact outcomes that count for the legal guard
    contacts: Sequence[date] = ()

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "levels_raised", tuple((int(lv), d) for lv, d in self.levels_raised)
        )
        object.__setattr__(self, "contacts", tuple(self.contacts))

    @property
    def highest_level(self) -> int:
        return max((level for level, _ in self.levels_raised), default=0)

    def with_raised(self, escalations: Iterable[Escalation], business_date: date) -> CaseState:
        """The case after raising ``escalations`` on ``business_date``."""
        added = tuple((e.level, business_date) for e in escalations)
        return CaseState(
            tuple(self.levels_raised) + added, self.opened_on, self.charged_off, self.contacts
        )


# --------------------------------------------------------------------------- measures


def days_past_due(oldest_unpaid_due_date: date | None, business_date: date) -> int:
    """Business date - oldest unpaid due date, never below 0 (0: nothing overdue)."""
    if oldest_unpaid_due_date is None:
        return 0
    return max(0, (business_date - oldest_unpaid_due_date).days)


def level_for(dpd: int, policy: CollectionsPolicy = DEFAULT_POLICY) -> int:
    """The ladder level a DPD has reached (0 when current); ignores the legal guard."""
    level = 0
    for rung in policy.ladder:
        if dpd >= rung.min_dpd:
            level = rung.level
    return level


def bucket_for(dpd: int, policy: CollectionsPolicy = DEFAULT_POLICY) -> str | None:
    """The delinquency bucket of a DPD (``M1`` ... ``M4+``), None when current."""
    for bucket in policy.buckets:
        if dpd >= bucket.min_dpd and (bucket.max_dpd is None or dpd <= bucket.max_dpd):
            return bucket.name
    return None


def should_charge_off(dpd: int, policy: CollectionsPolicy = DEFAULT_POLICY) -> bool:
    return dpd >= policy.charge_off_dpd


def charges_off(
    case: CaseState | None, dpd: int, policy: CollectionsPolicy = DEFAULT_POLICY
) -> bool:
    """A report with this DPD charges the account's case off (a new case when none is in
    play); a case already charged off is not charged off again."""
    return should_charge_off(dpd, policy) and not (case is not None and case.charged_off)


class ScheduledPrincipal(NamedTuple):
    """An unpaid installment of an open plan, as collections tracks it."""

    due_date: date
    principal: Decimal


def principal_not_yet_due(unpaid: Iterable[ScheduledPrincipal], business_date: date) -> Decimal:
    """Principal of the unpaid installments due on or after ``business_date``.

    Those due before it are overdue and already in the reported overdue amount (offers:
    overdue = unpaid with due_date < business_date), so they are left out here.
    """
    total = Decimal(0)
    for line in unpaid:
        _check_money(line.principal, "principal")
        if line.due_date >= business_date:
            total += line.principal
    return total


def charge_off_amount(overdue_amount: Decimal, not_yet_due: Decimal | None) -> Decimal:
    """Written off at charge-off: the overdue amount + the principal not yet due.

    ``not_yet_due`` None (the account's plans are not known): the overdue amount only.
    """
    _check_money(overdue_amount, "overdue_amount")
    if not_yet_due is None:
        return overdue_amount
    _check_money(not_yet_due, "not_yet_due")
    return overdue_amount + not_yet_due


def schedule_explains_report(unpaid: Iterable[ScheduledPrincipal], business_date: date) -> bool:
    """The tracked schedule has an unpaid installment overdue on ``business_date``.

    A delinquency report says something is overdue; a tracked schedule without any
    overdue installment has missed the account's plan events, so its not-yet-due
    principal cannot be trusted either (the charge-off falls back to the overdue amount).
    """
    return any(line.due_date < business_date for line in unpaid)


@dataclass(frozen=True)
class AdjustedSchedule:
    """What ``plan.adjusted`` does to a plan's tracked installments.

    ``principal``: seq -> its new principal (every installment the schedule lists);
    ``removed``: the unpaid installments it leaves out (no longer outstanding).
    """

    principal: dict[int, Decimal]
    removed: frozenset[int]

    def outstanding(self) -> Decimal:
        """The plan's outstanding principal after the adjustment."""
        return sum(self.principal.values(), Decimal(0))


def follow_adjusted_schedule(
    unpaid_seqs: Iterable[int], schedule: Iterable[tuple[int, Decimal]]
) -> AdjustedSchedule:
    """The plan after ``plan.adjusted``: ``schedule`` (``(seq, principal)`` of the unpaid
    installments after the change) replaces the tracked unpaid installments
    ``unpaid_seqs``; an unpaid one it does not list is removed."""
    principal: dict[int, Decimal] = {}
    for seq, amount in schedule:
        _check_money(amount, "principal")
        principal[seq] = amount
    removed = frozenset(seq for seq in unpaid_seqs if seq not in principal)
    return AdjustedSchedule(principal, removed)


def is_cured(dpd: int) -> bool:
    """A report with DPD 0 (every overdue installment cleared) cures an open case."""
    return dpd <= 0


def case_id_for(account_id: str, opened_on: date) -> str:
    """Deterministic case id: the account and the business date the case opened."""
    return f"case:{account_id}:{opened_on.isoformat()}"


# --------------------------------------------------------------------------- escalation


def legal_guard_holds(
    contact_dates: Iterable[date],
    overdue_amount: Decimal,
    policy: CollectionsPolicy = DEFAULT_POLICY,
) -> bool:
    """Overdue >= the legal minimum and enough contacts spaced the minimum gap apart.

    Contacts are counted greedily over the sorted dates: the first, then each one at
    least ``legal_contact_gap_days`` after the last counted one (for 2 contacts: the
    latest and the earliest are >= the gap apart).
    """
    _check_money(overdue_amount, "overdue_amount")
    if overdue_amount < policy.legal_min_overdue:
        return False
    counted = 0
    last: date | None = None
    for contact in sorted(contact_dates):
        if last is None or (contact - last).days >= policy.legal_contact_gap_days:
            counted += 1
            last = contact
    return counted >= policy.legal_min_contacts


def escalations_due(
    case: CaseState,
    dpd: int,
    overdue_amount: Decimal,
    business_date: date,
    policy: CollectionsPolicy = DEFAULT_POLICY,
) -> list[Escalation]:
    """Every level up to ``level_for(dpd)`` not raised on the case yet, lowest first.

    Stops before the legal level unless ``legal_guard_holds`` over the case's contacts
    (``guard_contacts``) plus the contact actions raised now (dated ``business_date``).
    A charged-off case gets none.
    """
    _check_money(overdue_amount, "overdue_amount")
    if case.charged_off:
        return []
    raised = {level for level, _ in case.levels_raised}
    contacts = guard_contacts(case, policy)
    due: list[Escalation] = []
    for level in range(1, level_for(dpd, policy) + 1):
        if level in raised:
            continue
        if level == policy.legal_level and not legal_guard_holds(contacts, overdue_amount, policy):
            break  # stays with the agency; never skip to a level above
        action = policy.rung(level).action
        due.append(Escalation(level, action))
        if action in policy.contact_actions:
            contacts.append(business_date)
    return due


def guard_contacts(case: CaseState, policy: CollectionsPolicy = DEFAULT_POLICY) -> list[date]:
    """The dates of the case's contacts for the legal guard: the contact actions raised
    (``policy.contact_actions``) and the recorded contact outcomes that count."""
    raised = [d for level, d in case.levels_raised
              if policy.rung(level).action in policy.contact_actions]  # fmt: skip
    return raised + list(case.contacts)


# --------------------------------------------------------------------------- one report


@dataclass(frozen=True)
class CollectionsDecision:
    """What one ``account.delinquency`` report leads to, in emission order:

    1. ``opened``: a new case ``case_id`` was opened (no event of its own);
    2. ``escalations``: one ``escalation.raised`` each (with ``bucket``);
    3. ``resolution``: ``cured`` / ``charged_off`` -> ``escalation.resolved``
       (``written_off`` is its ``amount`` for a charge-off, else None).

    ``written_off`` is ``charge_off_amount(overdue_amount, principal_not_yet_due)``.
    ``case`` is the state to store afterwards (None: no case on the account).
    ``case_id`` is None only when there was and is no case.
    """

    case_id: str | None
    opened: bool
    escalations: tuple[Escalation, ...]
    bucket: str | None
    resolution: str | None
    written_off: Decimal | None
    case: CaseState | None


def assess_delinquency(
    account_id: str,
    case: CaseState | None,
    dpd: int,
    overdue_amount: Decimal,
    business_date: date,
    policy: CollectionsPolicy = DEFAULT_POLICY,
    principal_not_yet_due: Decimal | None = None,
    held: bool = False,
) -> CollectionsDecision:
    """Apply one delinquency report to the account's case (see the module rules).

    ``principal_not_yet_due``: of the account's open plans on ``business_date``, for a
    report that ``charges_off`` (None: not known, only the overdue amount is written off).
    ``held``: a promise or a dispute holds the ladder at this close (``ladder_held``):
    no level is raised; a cure or a charge-off happens all the same.
    """
    _check_money(overdue_amount, "overdue_amount")
    bucket = bucket_for(dpd, policy)
    case_id = case_id_for(account_id, case.opened_on) if case is not None else None

    if case is None:
        if is_cured(dpd):
            return CollectionsDecision(None, False, (), None, None, None, None)
        case = CaseState((), business_date)
        case_id = case_id_for(account_id, business_date)
        opened = True
    else:
        opened = False
        if case.charged_off:
            # Written off already: a clean report closes it silently, else nothing.
            after = None if is_cured(dpd) else case
            return CollectionsDecision(case_id, False, (), bucket, None, None, after)
        if is_cured(dpd):
            return CollectionsDecision(case_id, False, (), None, CURED, None, None)

    escalations = (
        () if held else tuple(escalations_due(case, dpd, overdue_amount, business_date, policy))
    )
    case = case.with_raised(escalations, business_date)
    if should_charge_off(dpd, policy):
        charged = CaseState(case.levels_raised, case.opened_on, True, case.contacts)
        written_off = charge_off_amount(overdue_amount, principal_not_yet_due)
        return CollectionsDecision(
            case_id, opened, escalations, bucket, CHARGED_OFF, written_off, charged
        )
    return CollectionsDecision(case_id, opened, escalations, bucket, None, None, case)


# --------------------------------------------------------------------------- contacts

#: Outcomes of ``contact.recorded`` (CONTRACT 4.1).
PROMISE_TO_PAY, DISPUTE, DISPUTE_RESOLVED = "promise_to_pay", "dispute", "dispute_resolved"
#: Promise statuses: undecided, kept, broken, void (its case resolved while undecided).
PROMISE_OPEN, PROMISE_KEPT, PROMISE_BROKEN, PROMISE_VOID = "open", "kept", "broken", "void"


def counts_as_contact(outcome: str, policy: CollectionsPolicy = DEFAULT_POLICY) -> bool:
    """A recorded outcome that counts as a contact for the legal guard."""
    return outcome in policy.contact_outcomes


def promise_refusal(
    contacted_on: date, promised_date: date, policy: CollectionsPolicy = DEFAULT_POLICY
) -> str | None:
    """Why a ``promise_to_pay`` is refused (None: accepted): the promised date must be
    between ``contacted_on`` and ``contacted_on + promise_max_days``."""
    if promised_date < contacted_on:
        return "promised_date is before contacted_on"
    if (promised_date - contacted_on).days > policy.promise_max_days:
        return f"promised_date is more than {policy.promise_max_days} days after contacted_on"
    return None


@dataclass(frozen=True)
class Promise:
    """A ``promise_to_pay`` as the rules see it."""

    contact_id: str
    contacted_on: date
    promised_date: date
    promised_amount: Decimal
    currency: str
    status: str = PROMISE_OPEN

    def decided_on(self, policy: CollectionsPolicy = DEFAULT_POLICY) -> date:
        """The business date whose close breaks the promise if it is still open."""
        return self.promised_date + timedelta(days=policy.promise_grace_days)


@dataclass(frozen=True)
class Dispute:
    """A ``dispute`` recorded on a case; ``resolved`` once a ``dispute_resolved`` came."""

    contacted_on: date
    resolved: bool = False

    def holds_through(self, policy: CollectionsPolicy = DEFAULT_POLICY) -> date:
        return self.contacted_on + timedelta(days=policy.dispute_max_days)


class Payment(NamedTuple):
    """A payment collections knows of (an ``installment.paid``)."""

    paid_on: date
    amount: Decimal
    currency: str


def paid_towards(promise: Promise, payments: Iterable[Payment]) -> Decimal:
    """The payments in the promise's currency dated from its ``contacted_on`` on."""
    total = Decimal(0)
    for p in payments:
        _check_money(p.amount, "amount")
        if p.currency == promise.currency and p.paid_on >= promise.contacted_on:
            total += p.amount
    return total


def promises_kept(
    promises: Iterable[Promise], payments: Sequence[Payment]
) -> list[tuple[Promise, Decimal]]:
    """The open promises the payments now keep, with what was paid towards each."""
    kept = []
    for promise in promises:
        if promise.status != PROMISE_OPEN:
            continue
        paid = paid_towards(promise, payments)
        if paid >= promise.promised_amount:
            kept.append((promise, paid))
    return kept


def promises_broken(
    promises: Iterable[Promise],
    payments: Sequence[Payment],
    business_date: date,
    policy: CollectionsPolicy = DEFAULT_POLICY,
) -> list[tuple[Promise, Decimal]]:
    """The open promises the close of ``business_date`` breaks (it is on or after their
    ``promised_date + promise_grace_days`` and they are not kept), with what was paid."""
    broken = []
    for promise in promises:
        if promise.status != PROMISE_OPEN or business_date < promise.decided_on(policy):
            continue
        paid = paid_towards(promise, payments)
        if paid < promise.promised_amount:
            broken.append((promise, paid))
    return broken


def ladder_held(
    promises: Iterable[Promise],
    disputes: Iterable[Dispute],
    business_date: date,
    policy: CollectionsPolicy = DEFAULT_POLICY,
) -> bool:
    """No level is raised at the close of ``business_date``: a promise (not void) whose
    ``promised_date + promise_grace_days`` is later, or an unresolved dispute whose
    ``contacted_on + dispute_max_days`` is not earlier."""
    if any(p.status != PROMISE_VOID and business_date < p.decided_on(policy) for p in promises):
        return True
    return any(not d.resolved and business_date <= d.holds_through(policy) for d in disputes)


# --------------------------------------------------------------------------- reserve


def reserve_bucket_for(dpd: int | None, policy: CollectionsPolicy = DEFAULT_POLICY) -> str:
    """The reserve bucket: ``current`` for None / DPD <= 0, else ``bucket_for``."""
    if dpd is None or dpd <= 0:
        return CURRENT
    bucket = bucket_for(dpd, policy)
    assert bucket is not None  # buckets are contiguous from DPD 1 and open-ended
    return bucket


def risk_reserve(
    exposures: Iterable[tuple[int | None, Decimal]],
    policy: CollectionsPolicy = DEFAULT_POLICY,
) -> dict[str, Decimal]:
    """Reserve per bucket for ``(dpd or None for current, outstanding_principal)`` pairs.

    Principal is summed per bucket, times the bucket's rate, rounded half-up to the
    minor unit. Every bucket is present (``current`` first, then the policy's order).
    """
    principal: dict[str, Decimal] = {CURRENT: Decimal(0)}
    principal.update({b.name: Decimal(0) for b in policy.buckets})
    for dpd, outstanding in exposures:
        _check_money(outstanding, "outstanding_principal")
        principal[reserve_bucket_for(dpd, policy)] += outstanding
    return {
        name: (amount * policy.reserve_rates[name]).quantize(
            policy.minor_unit, rounding=ROUND_HALF_UP
        )
        for name, amount in principal.items()
    }


def reserve_total(reserve: dict[str, Decimal]) -> Decimal:
    """The total of a ``risk_reserve`` result."""
    return sum(reserve.values(), Decimal(0))


# --------------------------------------------------------------------------- helpers


def _check_money(value: Decimal, name: str) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name} must be a finite amount >= 0")
