"""The console's Starlette application (server-rendered pages; no script at all).

Routes (every one needs a signed-in agent except ``/healthz``, ``/readyz``,
``/metrics`` and ``/signin``):

- ``GET /``: the work queue (``level``, ``bucket``, ``min_amount``, ``currency``,
  ``sort`` = dpd|amount, ``order`` = desc|asc, ``after`` / ``before`` cursors);
- ``GET /cases/{case_id}``: the case and its timeline, with the contact form;
  ``POST`` there records a contact outcome (publishes ``contact.recorded``);
- ``GET|POST /signin``, ``POST /signout``.

Every POST carries the session's CSRF token (``csrf_token``), refused with 403
otherwise. The session is Starlette's signed cookie (itsdangerous), ``HttpOnly``,
``SameSite=Lax``, ``Secure`` in production, expiring after
``INSTALLMENTS_CONSOLE_SESSION_MAX_AGE_S``.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from services.collections.console import queries
from services.collections.console.agents import AgentDirectory
from services.collections.console.publisher import (
    OUTCOMES,
    Publisher,
    build_contact,
    new_contact_id,
    publish_contact,
    today,
)
from services.collections.console.settings import ConsoleSettings
from services.collections.tables import OPEN, cases
from shared.runtime.logging import get_logger

TEMPLATES = Path(__file__).parent / "templates"
PUBLIC = frozenset({"/healthz", "/readyz", "/metrics", "/signin"})
SESSION_COOKIE = "collections_console"

SIGNINS = Counter(
    "installments_console_signins_total", "Console sign-in attempts by result", ["result"]
)
CONTACTS = Counter(
    "installments_console_contacts_total",
    "Contact outcomes submitted in the console, by outcome and result (published, invalid, failed)",
    ["outcome", "result"],
)
PAGE_SECONDS = Histogram(
    "installments_console_page_seconds",
    "Time to build a console page (database reads included)",
    ["page"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

log = get_logger(component="collections-console")


def case_url(case_id: str) -> str:
    return "/cases/" + quote(case_id, safe="")


def _safe_next(target: str | None) -> str:
    """Only a path of this site (no scheme, no //host): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class _SignInRequired(BaseHTTPMiddleware):
    """Every path but the public ones needs a session of an agent still in the file."""

    def __init__(self, app: Any, agents: AgentDirectory) -> None:
        super().__init__(app)
        self.agents = agents

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path not in PUBLIC:
            username = request.session.get("agent")
            agent = await run_in_threadpool(self.agents.get, username) if username else None
            if agent is None:
                request.session.pop("agent", None)
                target = path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse("/signin?" + urlencode({"next": target}), 303)
            request.state.agent = agent
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
            " frame-ancestors 'none'; base-uri 'none'",
        )
        return response


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def csrf_ok(request: Request, form: Any) -> bool:
    expected = request.session.get("csrf")
    given = form.get("csrf_token")
    return bool(expected and isinstance(given, str) and hmac.compare_digest(given, expected))


def create_app(
    settings: ConsoleSettings,
    *,
    engine: Engine,
    publisher: Publisher,
    agents: AgentDirectory | None = None,
    promise_max_days: int = 30,
) -> Starlette:
    """The console bound to the collections database ``engine`` and a ``publisher``."""
    agents = agents or AgentDirectory(settings.console_users_file)
    secret, configured = settings.session_secret()
    if not configured:
        log.warning(
            "console session secret not configured: a random one is used"
            " (sessions end at restart); set INSTALLMENTS_CONSOLE_SECRET"
        )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.globals.update(case_url=case_url, urlencode=urlencode, outcomes=OUTCOMES)
    env.globals.update(buckets=queries.BUCKETS, levels=queries.LEVELS)
    templates = Jinja2Templates(env=env)

    def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        agent = getattr(request.state, "agent", None)
        context.update(agent=agent, csrf_token=csrf_token(request))
        return templates.TemplateResponse(request, name, context, status_code=status)

    # ------------------------------------------------------------ health and metrics

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    def _database_answers() -> tuple[bool, str]:
        try:
            with engine.connect() as conn:
                conn.execute(select(cases.c.case_id).limit(1)).all()
            return True, "ok"
        except Exception as exc:  # any failure means not ready
            return False, type(exc).__name__

    async def readyz(request: Request) -> Response:
        ok, detail = await run_in_threadpool(_database_answers)
        body = {"status": "ready" if ok else "not ready", "database": detail}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------ sign-in

    async def signin(request: Request) -> Response:
        next_url = _safe_next(request.query_params.get("next"))
        if request.method == "GET":
            return render(request, "signin.html", next=next_url, error=None, username="")
        form = await request.form()
        next_url = _safe_next(str(form.get("next") or "/"))
        if not csrf_ok(request, form):
            SIGNINS.labels("csrf").inc()
            return render(
                request, "signin.html", 403, next=next_url, username="",
                error="The sign-in form expired: please try again.",
            )  # fmt: skip
        username = str(form.get("username") or "")
        password = str(form.get("password") or "")
        agent = await run_in_threadpool(agents.authenticate, username, password)
        if agent is None:
            SIGNINS.labels("refused").inc()
            log.warning("console sign-in refused")  # no username: it may be a typed password
            return render(
                request, "signin.html", 401, next=next_url, username=username[:64],
                error="Unknown username or wrong password.",
            )  # fmt: skip
        request.session.clear()  # a new session: a new CSRF token
        request.session.update(agent=agent.username, signed_in_at=int(time.time()))
        SIGNINS.labels("ok").inc()
        log.info("console sign-in", agent=agent.agent_ref)
        return RedirectResponse(next_url, 303)

    async def signout(request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request, form):
            return PlainTextResponse("CSRF token missing or wrong", 403)
        log.info("console sign-out", agent=request.state.agent.agent_ref)
        request.session.clear()
        return RedirectResponse("/signin", 303)

    # ------------------------------------------------------------ the work queue

    async def queue(request: Request) -> Response:
        started = time.perf_counter()
        filt, errors = queries.parse_filter(request.query_params)
        after = request.query_params.get("after") or None
        before = request.query_params.get("before") or None
        page = await run_in_threadpool(
            lambda: queries.work_queue(
                engine, filt, after=after, before=before, limit=settings.console_page_size
            )
        )
        params = filt.params()
        links = {
            "next": "/?" + urlencode({**params, "after": page.next_cursor})
            if page.next_cursor else None,
            "prev": "/?" + urlencode({**params, "before": page.prev_cursor})
            if page.prev_cursor else None,
            "first": "/?" + urlencode(params) if (after or before) else None,
        }  # fmt: skip
        sort_links = {
            sort: "/?"
            + urlencode(
                {
                    **params,
                    "sort": sort,
                    "order": "asc" if (filt.sort == sort and filt.order == "desc") else "desc",
                }
            )  # fmt: skip
            for sort in queries.SORTS
        }
        response = render(
            request, "queue.html", page=page, filter=filt, errors=errors, links=links,
            sort_links=sort_links,
        )  # fmt: skip
        PAGE_SECONDS.labels("queue").observe(time.perf_counter() - started)
        return response

    # ------------------------------------------------------------ a case

    async def case_page(request: Request) -> Response:
        started = time.perf_counter()
        case_id = request.path_params["case_id"]
        view = await run_in_threadpool(queries.case_timeline, engine, case_id)
        if view is None:
            return render(request, "not_found.html", 404, case_id=case_id)
        if request.method == "POST":
            return await record_contact(request, view)
        recorded = request.query_params.get("recorded")
        response = render(
            request, "case.html", view=view, errors={}, recorded=recorded,
            form=_blank_form(view.case),
        )  # fmt: skip
        PAGE_SECONDS.labels("case").observe(time.perf_counter() - started)
        return response

    def _blank_form(case: dict[str, Any]) -> dict[str, str]:
        return {
            "contact_id": new_contact_id(),
            "outcome": "",
            "contacted_on": today().isoformat(),
            "promised_amount": "",
            "currency": str(case["currency"]),
            "promised_date": "",
        }

    async def record_contact(request: Request, view: queries.CaseView) -> Response:
        agent = request.state.agent
        form = await request.form()
        if not csrf_ok(request, form):
            CONTACTS.labels("-", "csrf").inc()
            log.warning("contact refused: CSRF token", agent=agent.agent_ref,
                        case_id=view.case["case_id"])  # fmt: skip
            return render(
                request, "case.html", 403, view=view, recorded=None,
                errors={"form": "The form expired or was not sent from this console:"
                        " reload the page and submit again."},
                form=_blank_form(view.case),
            )  # fmt: skip
        fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        outcome = fields.get("outcome", "")
        outcome_label = outcome if outcome in OUTCOMES else "invalid"
        if view.case["status"] != OPEN:
            CONTACTS.labels(outcome_label, "invalid").inc()
            return render(
                request, "case.html", 409, view=view, recorded=None, form=fields,
                errors={"form": f"This case is {view.case['status']}: no contact can be"
                        " recorded on it."},
            )  # fmt: skip
        envelope, errors = build_contact(
            fields,
            case_id=view.case["case_id"],
            account_id=view.case["account_id"],
            agent_ref=agent.agent_ref,
            promise_max_days=promise_max_days,
        )
        if envelope is None:
            CONTACTS.labels(outcome_label, "invalid").inc()
            return render(
                request, "case.html", 400, view=view, recorded=None, form=fields, errors=errors
            )
        try:
            topic = await run_in_threadpool(publish_contact, publisher, settings, envelope)
        except Exception as exc:
            CONTACTS.labels(outcome_label, "failed").inc()
            log.error("contact not published", agent=agent.agent_ref,
                      case_id=view.case["case_id"], outcome=outcome,
                      error=type(exc).__name__)  # fmt: skip
            return render(
                request, "case.html", 503, view=view, recorded=None, form=fields,
                errors={"form": "The contact could not be published (the message broker did"
                        " not answer). Nothing was recorded: submit again."},
            )  # fmt: skip
        CONTACTS.labels(outcome_label, "published").inc()
        log.info(
            "contact recorded",
            agent=agent.agent_ref,
            case_id=view.case["case_id"],
            outcome=outcome,
            contact_id=envelope.data.contact_id,
            event_id=str(envelope.id),
            topic=topic,
        )
        target = (
            case_url(view.case["case_id"]) + "?" + urlencode({"recorded": envelope.data.contact_id})
        )
        return RedirectResponse(target, 303)

    async def not_found(request: Request, exc: Exception) -> Response:
        if getattr(request.state, "agent", None) is None:
            return PlainTextResponse("not found", 404)
        return render(request, "not_found.html", 404, case_id=None)

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/signin", signin, methods=["GET", "POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/", queue),
        Route("/cases/{case_id:path}", case_page, methods=["GET", "POST"]),
    ]
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=secret,
            session_cookie=SESSION_COOKIE,
            max_age=settings.console_session_max_age_s,
            same_site="lax",
            https_only=settings.environment == "production",
        ),
        Middleware(_SignInRequired, agents=agents),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={404: not_found})
    app.state.settings = settings
    app.state.publisher = publisher
    return app
