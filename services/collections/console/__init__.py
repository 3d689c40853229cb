"""The collections team's web console (issue #14): server-rendered pages, no SPA.

- a work queue of the open cases (filters, sorting, keyset pagination),
- a case page (the case's timeline from the collections service's tables),
- a form that records a contact outcome by PUBLISHING ``contact.recorded`` on
  ``collections.outcomes.v1``: the collections service stays the only writer of its
  tables, the console only reads them,
- sign-in of agents from a users file (scrypt hashes), a signed session cookie, a
  CSRF token on every form, ``/healthz`` ``/readyz`` ``/metrics``.

It lives in the collections service's package because it is that service's tool: it
reads only that service's tables (``services.collections.tables``) and needs nothing
from the registry (``shared.registry`` and above), so the layering stays
``schemas <- shared.runtime <- services``.

Modules: ``settings`` (the console's settings), ``agents`` (users file, password
hashes), ``queries`` (read models), ``publisher`` (the contact event, Kafka),
``app`` (the Starlette application), ``bench`` (the 100,000-case benchmark).
"""
