"""The link page in a real browser (Debian's chromium driven by Playwright), desktop and phone sized."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest

from tests.conftest import IN_CI, Live, link_ending

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
    assert await page.locator("#status").inner_text() == "Waiting for an answer."
    assert "Hello <b>team</b>" in await page.locator("table.args").inner_text()  # shown as text, not markup
    await page.fill("#comment", "Looks good")
    await page.click("button[value=approve]")
    await page.wait_for_selector("#result")
    assert "you approved" in await page.locator("#result").inner_text()
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


async def test_an_edit_on_a_phone_reaches_the_functions_arguments(live: Live, browser) -> None:
    import asyncio

    from gateway.client import AsyncGateway

    ran: list[tuple[str, int]] = []
    async with AsyncGateway(live.base_url, live.key) as gw:

        @gw.require_approval("alice@example.com", editable=["amount"])
        async def refund(customer: str, amount: int) -> str:
            ran.append((customer, amount))
            return f"refunded {amount}"

        call = asyncio.create_task(refund("ann@example.com", 40))
        (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
        context = await browser.new_context(viewport={"width": 390, "height": 780}, is_mobile=True, has_touch=True)
        page = await context.new_page()
        await page.goto(link_ending(mail, "/approve"))
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
