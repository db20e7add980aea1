"""The link page in a real browser (Debian's chromium driven by Playwright), desktop and phone sized."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, Live, html_part, link_ending, links_in

CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    if not shutil.which(CHROMIUM):
        if IN_CI:
            pytest.fail(f"chromium is missing at {CHROMIUM}")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        instance = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield instance
        finally:
            await instance.close()


async def test_click_approve_in_a_real_browser(live: Live, browser, tmp_path) -> None:
    approval = await live.approval(
        kwargs={"to": "ceo@example.com", "body": "Hello <b>team</b>\nSecond line"},
        channel={"email": {"to": ["alice@example.com"], "context": "Monthly summary"}},
    )
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    page = await browser.new_page()
    await page.goto(link_ending(mail, "/approve"))
    assert await page.locator("#status").inner_text() == "Waiting for your decision."
    assert "Hello <b>team</b>" in await page.locator("table.args").inner_text()  # shown as text, not markup
    await page.fill("#comment", "Looks good")
    await page.click("button[value=approve]")
    await page.wait_for_selector("#result")
    assert "You approved this request." in await page.locator("#result").inner_text()
    assert "Approved by alice@example.com" in await page.locator("#status").inner_text()
    await page.screenshot(path=str(tmp_path / "approved.png"))

    body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
    assert body["status"] == "approved"
    assert body["comment"] == "Looks good"
    assert body["decided_via"] == "link"


async def test_reject_on_a_phone_sized_screen(live: Live, browser) -> None:
    approval = await live.approval(kwargs={"query": "DELETE FROM users WHERE " + "x = 1 AND " * 40 + "1=1"})
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    context = await browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page = await context.new_page()
    await page.goto(link_ending(mail, "/reject"))
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page scrolls sideways by {overflow}px on a phone"
    await page.fill("#comment", "Never delete users.")
    await page.tap("button[value=reject]")
    await page.wait_for_selector("#result")
    body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
    assert body["status"] == "rejected" and body["comment"] == "Never delete users."
    await context.close()


async def test_page_works_without_javascript(live: Live, browser) -> None:
    approval = await live.approval()
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await page.goto(link_ending(mail, "/approve"))
    await page.click("button[value=approve]")
    await page.wait_for_selector("#result")
    assert (await live.client.get(f"/v1/approvals/{approval['id']}")).json()["status"] == "approved"
    await context.close()


async def test_an_edit_on_a_phone_reaches_the_functions_arguments(dev_gateway, browser) -> None:  # type: ignore[no-untyped-def]
    """Against a real `gateway dev` process: the agent's function runs with what the approver typed on a phone."""
    import asyncio

    from gateway.client import AsyncGateway
    from tests.processes import DEV_KEY, link, wait_for_mail

    base, _ = dev_gateway
    ran: list[tuple[str, int]] = []
    async with AsyncGateway(base, DEV_KEY) as gw:

        @gw.require_approval("alice@example.com", editable=["amount"])
        async def refund(customer: str, amount: int) -> str:
            ran.append((customer, amount))
            return f"refunded {amount}"

        call = asyncio.create_task(refund("ann@example.com", 40))
        (mail,) = await asyncio.to_thread(wait_for_mail, base, "alice@example.com")
        context = await browser.new_context(viewport={"width": 390, "height": 780}, is_mobile=True, has_touch=True)
        page = await context.new_page()
        await page.goto(link(mail, "/approve"))
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"page scrolls sideways by {overflow}px on a phone"
        assert await page.input_value("input[name='kwargs.amount']") == "40"
        assert await page.locator("input[name='kwargs.customer']").count() == 0  # not editable
        await page.fill("input[name='kwargs.amount']", "35")
        await page.tap("button[value=approve]")
        await page.wait_for_selector("#result")
        assert "edited" in await page.locator("table.args").inner_text()
        told = await asyncio.wait_for(call, 10)
        await context.close()
    assert ran == [("ann@example.com", 35)]
    assert told.startswith("refunded 35\n\nThe human changed amount from 40 to 35")


async def test_a_typed_question_form_without_javascript(live: Live, browser) -> None:
    schema = {
        "type": "object",
        "properties": {
            "start": {"type": "string", "format": "date", "title": "Start date"},
            "nights": {"type": "integer", "minimum": 1, "title": "Nights"},
            "room": {"enum": ["single", "double"], "title": "Room"},
            "breakfast": {"type": "boolean", "title": "Breakfast"},
        },
        "required": ["start", "nights", "room"],
    }
    created = await live.client.post(
        "/v1/questions",
        json={
            "message": "Book the hotel?",
            "channel": {"email": {"to": ["bob@example.com"]}},
            "response_schema": schema,
        },
    )
    question = created.json()
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await page.goto(link_ending(mail, "/answer"))
    assert await page.get_attribute("input[name=start]", "type") == "date"
    await page.fill("input[name=start]", "2027-04-12")
    await page.fill("input[name=nights]", "0")
    await page.select_option("select[name=room]", "double")
    await page.check("input[name=breakfast]")
    await page.click("button.send")
    await page.wait_for_selector("#e-nights")
    assert await page.locator("#e-nights").inner_text() == "Nights must be at least 1."
    assert await page.input_value("input[name=start]") == "2027-04-12"  # what was typed is kept
    await page.fill("input[name=nights]", "3")
    await page.click("button.send")
    await page.wait_for_selector("#result")
    await context.close()
    body = (await live.client.get(f"/v1/questions/{question['id']}")).json()
    assert body["response_data"] == {"start": "2027-04-12", "nights": 3, "room": "double", "breakfast": True}


async def test_the_api_docs_render_with_no_way_out(live: Live, browser) -> None:
    """/docs loads only from the gateway itself: with every other host refused, Swagger UI still renders."""
    context = await browser.new_context()
    elsewhere: list[str] = []

    async def only_here(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith(live.base_url):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_here)
    page = await context.new_page()
    await page.goto(f"{live.base_url}/docs")
    await page.wait_for_selector(".swagger-ui .info .title", timeout=15000)
    assert "Approval gateway" in await page.locator(".swagger-ui .info .title").inner_text()
    assert await page.locator(".opblock-summary-path").count() > 10  # the endpoints are listed
    assert elsewhere == []
    await context.close()


# --- every page state, as a person reads it, at phone and desktop widths --------------------------------------

WIDTHS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "img"


async def _read(browser, url: str, width: str, *, js: bool = False):  # type: ignore[no-untyped-def]
    """The page as a person reads it, with JavaScript off (every page and form works without it)."""
    context = await browser.new_context(viewport=WIDTHS[width], java_script_enabled=js)
    page = await context.new_page()
    response = await page.goto(url)
    text = await page.locator("main").inner_text()
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{url} scrolls sideways by {overflow}px at {width} width"
    assert not re.search(r"\b(apr|qst|rcp|rsp)_[a-z2-7]{10,}", text), f"an internal id is shown: {text}"
    return context, page, response.status, text


async def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """The README's pictures come from these runs (GATEWAY_WRITE_SCREENSHOTS=1), so they never drift."""
    if os.environ.get("GATEWAY_WRITE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("width", ["phone", "desktop"])
async def test_every_approval_page_state_reads_clearly(live: Live, browser, width: str) -> None:
    approval = await live.approval(
        kwargs={"to": "ceo@example.com", "subject": "Q3 numbers", "body": "Revenue grew 12%. " * 8},
        channel={
            "email": {"to": ["alice@example.com", "bob@example.com"], "subject": "Send the Q3 update to the CEO?"}
        },
        policy="all",
    )
    mails = await live.sink.wait_for(2)  # type: ignore[union-attr]
    alice, bob = sorted(mails, key=lambda m: str(m["To"]))
    # The mail as the approver's client shows it: no sideways scroll on a phone either.
    context = await browser.new_context(viewport=WIDTHS[width] if width == "phone" else {"width": 720, "height": 400})
    mail_page = await context.new_page()
    await mail_page.set_content(html_part(alice))
    overflow = await mail_page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the mail scrolls sideways by {overflow}px at {width} width"
    assert "Send the Q3 update to the CEO?" in await mail_page.locator("body").inner_text()
    if width == "desktop":
        await _shot(mail_page, "approval-mail")
    await context.close()

    context, page, status, text = await _read(browser, link_ending(alice, "/approve"), width)
    assert status == 200
    assert "Send the Q3 update to the CEO?" in text and "From test-agent" in text  # the subject and the agent
    assert "ceo@example.com" in text and "Revenue grew 12%." in text  # the argument values, as prose
    assert await page.locator("td pre").count() == 0  # long text is prose, not code
    assert "Waiting for your decision." in text and "All 2 approvers must approve." in text
    await _shot(page, f"approval-page-{width}")
    await page.click("button[value=approve]")
    await page.wait_for_selector("#result")
    text = await page.locator("main").inner_text()
    assert "You approved this request; it still needs the other approvers." in text
    assert "APPROVAL NEEDED" not in text.upper() or "Approval request" in text
    await context.close()

    context, page, status, text = await _read(browser, link_ending(bob, "/reject"), width)
    await page.fill("#comment", "Wait for the audit.")
    await page.click("button[value=reject]")
    await page.wait_for_selector("#result")
    text = await page.locator("main").inner_text()
    assert "You rejected this request. The agent gets your comment." in text
    assert "Rejected by bob@example.com" in text and "Thank you" not in text
    assert await page.locator(".banner.rejected").count() == 1 and await page.locator(".banner.approved").count() == 0
    await _shot(page, f"rejected-page-{width}")
    await context.close()

    # The same form sent again: refused in words, by reference.
    context, page, status, text = await _read(browser, link_ending(bob, "/approve"), width)
    assert "Rejected by bob@example.com" in text and await page.locator("button[value=approve]").count() == 0
    await context.close()
    assert (await live.client.get(f"/v1/approvals/{approval['id']}")).json()["status"] == "rejected"

    inbox = next(u for u in links_in(alice) if "/r/inbox/" in u)
    context, page, status, text = await _read(browser, inbox, width)
    assert status == 200 and "Nothing is waiting for you" in text and "alice@example.com" in text
    await context.close()

    bad = link_ending(alice, "/approve").replace("/r/", "/r/x")
    context, page, status, text = await _read(browser, bad, width)
    assert status == 400 and "This link is not valid" in text
    await context.close()


@pytest.mark.parametrize("width", ["phone", "desktop"])
async def test_every_question_page_state_reads_clearly(live: Live, browser, width: str) -> None:
    created = await live.client.post(
        "/v1/questions",
        json={
            "message": "Which venue for the offsite?",
            "channel": {"email": {"to": ["bob@example.com"]}},
            "response_options": [
                {"name": "lisbon", "title": "Lisbon", "description": "Cheaper flights, warmer in May"},
                {"name": "berlin", "title": "Berlin", "description": "Closer for most of the team"},
            ],
        },
    )
    question = created.json()
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    context, page, _status, text = await _read(browser, link_ending(mail, "/answer"), width)
    assert "Which venue for the offsite?" in text and "Cheaper flights, warmer in May" in text  # no hover needed
    color = await page.eval_on_selector("button.send", "b => getComputedStyle(b).backgroundColor")
    assert color == "rgb(9, 105, 218)"  # a button that looks like one
    await _shot(page, f"question-page-{width}")
    await page.click("button[value=lisbon]")
    await page.wait_for_selector("#result")
    assert "your answer was sent to the agent" in (await page.locator("#result").inner_text())
    await context.close()
    assert (await live.client.get(f"/v1/questions/{question['id']}")).json()["response_option"] == "lisbon"

    cancelled = await live.client.post(
        "/v1/questions", json={"message": "Still need the slides?", "channel": {"email": {"to": ["bob@example.com"]}}}
    )
    await live.client.post(f"/v1/questions/{cancelled.json()['id']}/cancel")
    second = next(m for m in await live.sink.wait_for(3) if "slides" in str(m["Subject"]))  # type: ignore[union-attr]
    context, page, _status, text = await _read(browser, link_ending(second, "/answer"), width)
    assert "The agent withdrew this question" in text and "nothing more is needed" in text
    assert await page.locator("textarea").count() == 0
    await context.close()


async def test_pages_follow_the_readers_dark_mode(live: Live, browser) -> None:
    await live.approval()
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    colors = {}
    for scheme in ("light", "dark"):
        context = await browser.new_context(color_scheme=scheme, java_script_enabled=False)
        page = await context.new_page()
        await page.goto(link_ending(mail, "/approve"))
        colors[scheme] = await page.evaluate(
            "[getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
        )
        await context.close()
    assert colors["light"] == ["rgb(244, 245, 247)", "rgb(31, 35, 40)"]
    assert colors["dark"] == ["rgb(13, 17, 23)", "rgb(230, 237, 243)"]
