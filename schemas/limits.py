"""Every size limit of the contract, defined once.

The field types (:mod:`schemas.types`, :mod:`schemas.money`) take their bounds from
here, and every service table is built from (or checked against) the same numbers, so a
value the schemas accept is a value the database can store: no schema-valid event can
stop a service at the database.

Ids
    ``ID_MAX`` characters for an id that comes from outside (account, purchase, refund,
    payment, card token, merchant, promotion, contact reference, subject). The contract
    gives no length; today's ids are far shorter (envelope ids are UUIDs: 36).
    An id the project *derives* adds at most ``ID_AFFIX_MAX`` characters to the ids it
    is built from: ``off-<purchase_id>``, ``plan-<purchase_id>``,
    ``case:<account_id>:<YYYY-MM-DD>`` are at most ``DERIVED_ID_MAX``;
    ``rem:<plan_id>:<seq>:<offset>`` is derived from a derived id, at most
    ``REMINDER_ID_MAX`` (tests compute the longest of each from the longest inputs).
Strings
    No control characters: ids and codes reject U+0000-U+001F, U+007F-U+009F; free text
    (``Text``: merchant name, template, category) allows only the tab among them.
    PostgreSQL cannot store U+0000 in text at all. Lone surrogates are rejected by the
    raw-JSON guard and by pydantic (they cannot be encoded as UTF-8).
Integers
    ``COUNT_MAX`` = 2**63 - 1 (a PostgreSQL BIGINT): points, requested points,
    balances. Integers with a natural bound use it: installment ``seq`` <= ``TENOR_MAX``,
    days <= ``DAYS_MAX`` (the span of the calendar), so their columns may be 32-bit.
Money
    A single amount (purchase, refund, payment, limit, principal, installment, fee) has at
    most ``AMOUNT_INTEGER_DIGITS`` digits before the point (``AMOUNT_MAX`` = 10**12 minus
    one minor unit). Sums over several plans (an account's overdue amount) have at most
    ``TOTAL_INTEGER_DIGITS``; a charge-off (overdue amount + principal not yet due) one
    more, ``GRAND_TOTAL_INTEGER_DIGITS``. Both with at most ``MONEY_SCALE_MAX`` decimal
    places (the currency decides; ISO 4217 has at most 3). Columns are unconstrained
    NUMERIC on PostgreSQL, which holds any sum of them exactly.

Why 12 digits: the most points one purchase can bring is ``floor(amount x 2.0)``
(diamond) plus the same again as first-plan bonus: 4 x 10**12, so an account's balance
stays within 64 bits for more than ``HEADROOM_EVENTS_PER_ACCOUNT`` (a million) of the
largest purchases; redeeming a fee as large as the amount costs ``amount x 100`` points
(10**14). Every amount, sum and product with a rate stays far inside Python's 28-digit
decimal context.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

__all__ = [
    "ID_MAX",
    "ID_AFFIX_MAX",
    "DERIVED_ID_MAX",
    "REMINDER_ID_MAX",
    "EVENT_ID_LENGTH",
    "TEXT_MAX",
    "CATEGORY_MAX",
    "LOCALE_MAX",
    "ID_PATTERN",
    "TEXT_PATTERN",
    "COUNT_MAX",
    "INT32_MAX",
    "TENOR_MAX",
    "SEQ_MAX",
    "DAYS_MAX",
    "MONEY_SCALE_MAX",
    "AMOUNT_INTEGER_DIGITS",
    "TOTAL_INTEGER_DIGITS",
    "GRAND_TOTAL_INTEGER_DIGITS",
    "AMOUNT_MAX",
    "TOTAL_MAX",
    "POINTS_MULTIPLIER_MAX",
    "POINTS_PER_CURRENCY_UNIT",
    "HEADROOM_EVENTS_PER_ACCOUNT",
    "money_max",
]

# --- ids and strings --------------------------------------------------------------

#: Longest id from outside (account_id, purchase_id, refund_id, payment_id, ...).
ID_MAX = 64
#: Most characters one derivation adds to the ids it is built from.
ID_AFFIX_MAX = 32
#: Longest id derived from outside ids (offer_id, plan_id, case_id).
DERIVED_ID_MAX = ID_MAX + ID_AFFIX_MAX
#: Longest id derived from a derived id (reminder_id = rem:<plan_id>:<seq>:<offset>).
REMINDER_ID_MAX = DERIVED_ID_MAX + ID_AFFIX_MAX
#: An envelope id: a canonical UUID (8-4-4-4-12).
EVENT_ID_LENGTH = 36

#: Longest free text (merchant name, reminder template).
TEXT_MAX = 200
#: Longest locale (BCP 47-like: a 2-3 letter language and up to 4 subtags of 1-8).
LOCALE_MAX = 3 + 4 * (1 + 8)
#: Longest merchant category.
CATEGORY_MAX = 64

#: What an id or code may contain: no C0 control (NUL included), DEL or C1 control.
#: A JSON Schema ``pattern`` (ECMA-262) that Python's ``re`` reads the same way.
ID_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f]*$"
#: What free text may contain: the same, except that the tab (U+0009) is allowed.
TEXT_PATTERN = r"^[^\u0000-\u0008\u000a-\u001f\u007f-\u009f]*$"

# --- integers ---------------------------------------------------------------------

#: Largest count (points, requested points, balances): a PostgreSQL BIGINT.
COUNT_MAX = 2**63 - 1
#: Largest value of a 32-bit INTEGER column.
INT32_MAX = 2**31 - 1
#: Longest plan (months); an installment's ``seq`` is at most this.
TENOR_MAX = 120
SEQ_MAX = TENOR_MAX
#: Most days between two calendar dates (0001-01-01 .. 9999-12-31).
DAYS_MAX = (date.max - date.min).days

# --- money ------------------------------------------------------------------------

#: Most decimal places of any currency (ISO 4217 minor units: KWD, BHD, ... have 3).
MONEY_SCALE_MAX = 3
#: Digits before the point of a single amount.
AMOUNT_INTEGER_DIGITS = 12
#: Digits before the point of a sum over an account's plans.
TOTAL_INTEGER_DIGITS = 18
#: Digits before the point of a sum of two such sums (a charge-off writes off the overdue
#: amount plus the principal not yet due: each at most TOTAL_MAX).
GRAND_TOTAL_INTEGER_DIGITS = TOTAL_INTEGER_DIGITS + 1


def money_max(integer_digits: int, scale: int = MONEY_SCALE_MAX) -> Decimal:
    """The largest amount with ``integer_digits`` digits and ``scale`` decimal places."""
    return Decimal(10**integer_digits) - Decimal(1).scaleb(-scale)


#: Largest single amount (in a currency with 3 decimal places; 2: ...999.99).
AMOUNT_MAX = money_max(AMOUNT_INTEGER_DIGITS)
#: Largest sum of amounts carried in an event.
TOTAL_MAX = money_max(TOTAL_INTEGER_DIGITS)

# --- what the integer limits are sized for ------------------------------------------

#: The largest tier multiplier x first-plan bonus factor the limits are sized for
#: (contract defaults: diamond 2.0, bonus factor 1).
POINTS_MULTIPLIER_MAX = Decimal("2.0")
#: Points per 1.00 of fee redeemed (contract default).
POINTS_PER_CURRENCY_UNIT = 100
#: Extreme events per account whose points (and money) sums must fit.
HEADROOM_EVENTS_PER_ACCOUNT = 10**6
