"""The collections console in a real browser (issue #14), on the real Kafka and PostgreSQL.

Headless Chromium (Debian's, through its chromedriver: ``tests/browser/chromium.py``)
drives the console started as ``installments collections web`` with the test's settings
(its topic namespace and database) and a users file of one agent, whose password hash
is made by the console's own helper. The collections service runs in a thread of the
test on the same namespace.

One story, as an agent lives it:

1. a page asked for without signing in redirects to the sign-in page;
2. the agent signs in; the work queue, filtered by level and by a minimum amount,
   shows the case seeded through the service (``plan.created`` and an
   ``account.delinquency`` on ``installments.plans.v1``) and hides it when the minimum
   is above its overdue amount;
3. the case page opens from the queue; a ``promise_to_pay`` recorded through its form
   is published as ``contact.recorded`` on ``collections.outcomes.v1``;
4. a form post without the CSRF token is refused (and publishes nothing);
5. an ``installment.paid`` that covers the promise (the payments collections counts,
   dated from ``contacted_on`` on) makes the service emit ``promise.kept`` on
   ``collections.escalations.v1``, and the case page's timeline shows it.

Screenshots of the queue and of the case page are written to ``docs/screenshots/``
(committed; shown in the README). Chromium missing is a failure, never a skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.browser.chromium import chromium
from tests.builders.collections import plan_created
from tests.builders.services import COLLECTIONS
from tests.support import REPO, STARTED, Collector, Producer, envelope, running, settings_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PLANS = "installments.plans.v1"
ESCALATIONS = "collections.escalations.v1"
OUTCOMES = "collections.outcomes.v1"
#: The README's screenshots are rewritten only when asked (``UPDATE_SCREENSHOTS=1``): a
#: plain run saves them in the test's temporary folder (so the capture is still tested)
#: and leaves the work tree clean.
README_SCREENSHOTS = Path(REPO) / "docs" / "screenshots"

USERNAME, PASSWORD, AGENT_REF = "alice", "correct horse battery staple", "agent-alice"
ACCOUNT, PLAN = "acc-browser-1", "plan-browser-1"
OTHER_ACCOUNT, OTHER_PLAN = "acc-browser-2", "plan-browser-2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _delinquency(account_id: str, dpd: int, amount: str, business_date: Any) -> dict[str, Any]:
    data = {
        "account_id": account_id, "business_date": business_date.isoformat(),
        "days_past_due": dpd, "overdue_amount": amount, "currency": "USD",
        "oldest_unpaid_due_date": (business_date - timedelta(days=dpd)).isoformat(),
    }  # fmt: skip
    return envelope("account.delinquency", account_id, data, source="offers")


def _paid(account_id: str, plan_id: str, seq: int, amount: str, paid_on: Any) -> dict[str, Any]:
    data = {"plan_id": plan_id, "seq": seq, "amount": amount, "currency": "USD",
            "paid_on": paid_on.isoformat()}  # fmt: skip
    return envelope("installment.paid", account_id, data, source="offers")


def _start_console(
    settings: Any, users_file: Path, port: int, log: Path
) -> subprocess.Popen[bytes]:
    env = settings_env(settings)
    env.update(
        {
            "INSTALLMENTS_CONSOLE_USERS_FILE": str(users_file),
            "INSTALLMENTS_CONSOLE_HOST": "127.0.0.1",
            "INSTALLMENTS_CONSOLE_PORT": str(port),
            "INSTALLMENTS_AUTO_MIGRATE": "false",
        }
    )
    out = open(log, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from shared.cli import main; main()", "collections", "web"],
        env=env, cwd=REPO, stdout=out, stderr=out,
    )  # fmt: skip
    STARTED.append(proc)  # killed by the conftest fixture if the test fails
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"console exited: {log.read_text(errors='replace')[-3000:]}"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP answer (even 404): it is up
                return proc
            time.sleep(0.2)
    raise AssertionError(f"console did not start: {log.read_text(errors='replace')[-3000:]}")


def _wait(driver: WebDriver, predicate: Any, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate(driver):
                return
        except (StaleElementReferenceException, NoSuchElementException):
            pass  # the page changed under the read: ask again
        time.sleep(0.1)
    raise AssertionError(
        f"timed out waiting for {what} at {driver.current_url}:\n" + _body(driver)[:2000]
    )


def _body(driver: WebDriver) -> str:
    """The page's text ("" while a navigation replaces the page under the read)."""
    try:
        return str(driver.find_element(By.TAG_NAME, "body").text)
    except (StaleElementReferenceException, NoSuchElementException):
        return ""


def _fill(driver: WebDriver, name: str, value: str) -> None:
    element = driver.find_element(By.NAME, name)
    if element.tag_name == "select":
        Select(element).select_by_value(value)
        return
    if element.get_attribute("type") == "date":
        # typing into a date input depends on the locale: set it as a script would
        driver.execute_script("arguments[0].value = arguments[1];", element, value)
        return
    element.clear()
    element.send_keys(value)


def _screenshot(driver: WebDriver, path: Path) -> None:
    """The whole page (the window made as tall as the document), as a PNG."""
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    full = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, max(height, int(full) + 120))
    path.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(path)), f"no screenshot {path}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    driver.set_window_size(width, height)


def _submit(driver: WebDriver, form_field: str) -> None:
    """Submit the form that holds the field named ``form_field`` (its submit button)."""
    form = driver.find_element(By.NAME, form_field).find_element(By.XPATH, "./ancestor::form")
    buttons = form.find_elements(By.CSS_SELECTOR, "button[type=submit], input[type=submit]")
    buttons = buttons or form.find_elements(By.TAG_NAME, "button")
    buttons[0].click()


def test_console_in_a_real_browser(settings, tmp_path):
    from services.collections.console.agents import add_agent

    started = time.monotonic()
    shots = README_SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    today = datetime.now(UTC).date()
    users_file = tmp_path / "agents.yaml"
    add_agent(users_file, USERNAME, PASSWORD, AGENT_REF)

    escalations = Collector(settings, ESCALATIONS)
    outcomes = Collector(settings, OUTCOMES)
    producer = Producer(settings)
    with running(COLLECTIONS, settings=settings):
        # --- seed: two overdue accounts; collections opens a case for each
        first_due = today - timedelta(days=5)
        producer.send_all(PLANS, [
            plan_created(ACCOUNT, PLAN, "1227.00", 3, first_due=first_due),
            plan_created(OTHER_ACCOUNT, OTHER_PLAN, "300.00", 3, first_due=first_due),
            _delinquency(ACCOUNT, 5, "409.00", today),
            _delinquency(OTHER_ACCOUNT, 5, "100.00", today),
        ])  # fmt: skip
        raised = escalations.wait_for(
            lambda rs: (
                {e.subject for e in escalations.events() if e.type == "escalation.raised"}
                >= {ACCOUNT, OTHER_ACCOUNT}
            ),
            30,
            "the two cases' first escalation",
        )
        assert raised
        case_id = next(
            str(e.data.case_id)
            for e in escalations.events()
            if e.type == "escalation.raised" and e.subject == ACCOUNT
        )

        port = _free_port()
        _start_console(settings, users_file, port, tmp_path / "console.log")
        base = f"http://127.0.0.1:{port}"

        with chromium() as driver:
            # 1. without signing in: redirected to the sign-in page
            driver.get(f"{base}/")
            _wait(driver, lambda d: d.find_elements(By.NAME, "password"), what="sign-in form")
            assert "login" in driver.current_url or "sign" in driver.current_url
            driver.get(f"{base}/cases/{case_id}")
            _wait(driver, lambda d: d.find_elements(By.NAME, "password"), what="sign-in form")
            assert case_id not in _body(driver)

            # a wrong password is refused
            _fill(driver, "username", USERNAME)
            _fill(driver, "password", "not the password")
            _submit(driver, "password")
            _wait(driver, lambda d: d.find_elements(By.ID, "signin-error"), what="the refusal")
            assert ACCOUNT not in _body(driver)

            # 2. sign in: the queue
            _fill(driver, "username", USERNAME)
            _fill(driver, "password", PASSWORD)
            _submit(driver, "password")
            # back to the page asked for before signing in (the case), then the queue
            _wait(driver, lambda d: d.find_elements(By.ID, "case-title"), what="the case page")
            assert driver.find_element(By.ID, "case-title").get_attribute("data-case-id") == (
                case_id
            )
            driver.find_element(By.ID, "back-to-queue").click()
            _wait(driver, lambda d: ACCOUNT in _body(d), what="the case in the queue")
            assert OTHER_ACCOUNT in _body(driver)

            # filter by level 1 and a minimum amount the other case does not reach
            _fill(driver, "level", "1")
            _fill(driver, "min_amount", "400")
            _submit(driver, "min_amount")
            _wait(driver, lambda d: "min_amount=400" in d.current_url, what="filtered queue")
            _wait(driver, lambda d: ACCOUNT in _body(d), what="the case in the filtered queue")
            assert OTHER_ACCOUNT not in _body(driver)
            _screenshot(driver, shots / "console-queue.png")
            # above its overdue amount: gone
            _fill(driver, "min_amount", "409.01")
            _submit(driver, "min_amount")
            _wait(driver, lambda d: "min_amount=409.01" in d.current_url, what="filtered queue")
            assert ACCOUNT not in _body(driver)
            _fill(driver, "min_amount", "")
            _submit(driver, "min_amount")
            _wait(driver, lambda d: ACCOUNT in _body(d), what="the case back in the queue")

            # 3. the case page, from the queue
            driver.find_element(
                By.CSS_SELECTOR, f"tr.case-row[data-case-id='{case_id}'] a.case-link"
            ).click()
            _wait(driver, lambda d: d.find_elements(By.NAME, "outcome"), what="the contact form")
            assert driver.current_url.endswith(f"/cases/{quote(case_id, safe='')}")
            title = driver.find_element(By.ID, "case-title")
            assert title.get_attribute("data-case-id") == case_id
            assert driver.find_element(By.ID, "case-account").text == ACCOUNT

            promised_date = today + timedelta(days=7)
            _fill(driver, "outcome", "promise_to_pay")
            _fill(driver, "contacted_on", today.isoformat())
            _fill(driver, "promised_amount", "409.00")
            _fill(driver, "currency", "USD")
            _fill(driver, "promised_date", promised_date.isoformat())
            _submit(driver, "outcome")
            outcomes.wait_for(lambda rs: len(rs) >= 1, 20, "contact.recorded")
            [contact] = outcomes.events()
            assert contact.type == "contact.recorded" and contact.subject == ACCOUNT
            c = contact.data
            assert (str(c.case_id), c.outcome, c.agent_ref) == (
                case_id,
                "promise_to_pay",
                AGENT_REF,
            )
            assert (str(c.promised_amount), c.currency, c.promised_date, c.contacted_on) == (
                "409.00", "USD", promised_date, today,
            )  # fmt: skip

            # 4. a form post without the CSRF token is refused, and publishes nothing
            # the real form, its token taken out of the page: the console refuses the post
            driver.find_element(By.ID, "back-to-queue").click()
            _wait(driver, lambda d: d.find_elements(By.ID, "queue"), what="the queue")
            driver.find_element(
                By.CSS_SELECTOR, f"tr.case-row[data-case-id='{case_id}'] a.case-link"
            ).click()
            _wait(driver, lambda d: d.find_elements(By.NAME, "outcome"), what="the contact form")
            tokens = driver.find_elements(By.CSS_SELECTOR, "#contact-form input[name=csrf_token]")
            assert len(tokens) == 1 and tokens[0].get_attribute("value")
            driver.execute_script("arguments[0].remove();", tokens[0])
            _fill(driver, "outcome", "reached")
            _submit(driver, "outcome")
            _wait(driver, lambda d: d.find_elements(By.ID, "form-errors"), what="the refusal")
            refusal = driver.find_element(By.ID, "form-errors").text
            assert "expired or was not sent from this console" in refusal, refusal
            # the same post outside the form (the session's cookie, no token): 403
            cookie = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
            request = urllib.request.Request(
                f"{base}/cases/{quote(case_id, safe='')}",
                data=urlencode({"outcome": "reached", "contacted_on": today.isoformat(),
                                "contact_id": str(uuid.uuid4())}).encode(),
                headers={"Cookie": cookie},
                method="POST",
            )  # fmt: skip
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 403
            outcomes.settle(1.0)
            assert len(outcomes.records) == 1, "the refused post published a contact"

            # 5. a payment that covers the promise: promise.kept
            producer.send_all(PLANS, [_paid(ACCOUNT, PLAN, 1, "409.00", today)])
            escalations.wait_for(
                lambda rs: any(e.type == "promise.kept" for e in escalations.events()),
                30,
                "promise.kept",
            )
            [kept] = [e for e in escalations.events() if e.type == "promise.kept"]
            assert kept.subject == ACCOUNT
            assert str(kept.data.case_id) == case_id

            case_page = f"{base}/cases/{quote(case_id, safe='')}"

            def timeline_shows_kept(d: WebDriver) -> bool:
                d.get(case_page)
                return "kept" in d.find_element(By.ID, "timeline").text.lower()

            _wait(driver, timeline_shows_kept, 20, "promise kept on the case page")
            kinds = [
                li.get_attribute("data-kind")
                for li in driver.find_elements(By.CSS_SELECTOR, "#timeline li.timeline-item")
            ]
            assert "contact" in kinds and "payment" in kinds, kinds
            assert driver.find_element(By.ID, "case-promise").text.startswith("kept")
            _screenshot(driver, shots / "console-case.png")

    producer.close()
    escalations.close()
    outcomes.close()
    assert time.monotonic() - started < 90
