"""Everything tests build, shared by the unit and the integration tests (no test module
imports another test module: tests/unit/test_architecture.py checks it).

* ``messages``: raw input messages as an outside system writes them (account, purchase,
  refund, payment, business_day, offer_accepted, offer_declined, new_id);
* ``examples``: one valid payload per event type, and raw messages built from them;
* ``offers``, ``points``, ``reminders``, ``collections``: what each service's tests feed
  it (the events the other services emit, topic names, small harness drivers), and for
  offers the domain's plan states, independent IRR and Hypothesis strategies;
* ``offers_batches``, ``points_batches``: the mixed-batch scenarios run both on SQLite
  (tests/unit) and on PostgreSQL (tests/integration);
* ``invariants``: fabricated event histories for the invariant checker;
* ``services``: the five services, built once with the default settings.
"""
