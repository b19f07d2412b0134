"""The warehouse console in a real headless Chromium, served by `rebound console` over the read
models the console's consumer fills from the real Kafka, with the services running as processes:
an operator signs in, replays a corrected dead letter and sees its unit graded and its stock
adjusted, matches a parked parcel to its return order by the order id and sees its unit reach
the shop, and traces a unit end to end; a seller's user reaches nothing of another seller's,
whatever the URL; a form posted without its CSRF token is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import orjson
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from rebound.console import accounts
from rebound.simulation.fleet import SERVICES, Fleet, wait_until_caught_up
from rebound_contracts.topics import PARCEL_SCANNED, RMA, UNIT_INSPECTED
from tests import factories as f
from tests.browsers import chromium
from tests.e2e.test_console import _send, _unit
from tests.integration.pipeline import Pipeline
from tests.local import answers, free_port

pytestmark = pytest.mark.e2e

WITH_CONSOLE = (*SERVICES, "console")
PASSWORD = "correct horse battery"


@pytest.fixture
def console_url(settings, tmp_path: Path) -> Iterator[str]:
    """`rebound console` as a process of its own, on a free port, until the test ends."""
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "REBOUND_CONSOLE_SECRET": "a secret for this test alone, 32 characters or more",
    }
    log = (tmp_path / "console-web.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "rebound", "console", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not answers(f"{url}/health", alive=lambda: process.poll() is None):
            raise AssertionError(f"rebound console did not start: {(tmp_path / 'console-web.log').read_text()}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


async def _sign_in(browser: Browser, url: str, username: str, target: str = "/cases") -> Page:
    page = await (await browser.new_context()).new_page()
    await page.goto(url + target)
    await expect(page).to_have_url(f"{url}/login?next={target.replace('?', '%3F').replace('=', '%3D')}")
    await page.get_by_label("User name").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text(f"{username} (")).to_be_visible()
    return page


def _shows(page: Page, text: str) -> Callable[[], Awaitable[bool]]:
    async def shown() -> bool:
        return text in await page.locator("main").inner_text()

    return shown


async def _reload_until(page: Page, shown: Callable[[], Awaitable[object]], what: str, seconds: float = 90) -> None:
    """Reload the page until `shown()` is truthy: the pipeline's work arrives in its own time."""
    deadline = time.monotonic() + seconds
    while not await shown():
        assert time.monotonic() < deadline, f"no {what} after {seconds:g} s"
        await page.wait_for_timeout(500)
        await page.reload()


async def test_operators_work_cases_and_trace_units_and_sellers_see_only_their_own(
    settings, pool, console_url: str, tmp_path: Path
) -> None:
    pipe = Pipeline(pool)
    seller, other = await pipe.add_sellers("web-a", "web-b")
    warehouse, operator, other_user, admin = pipe.id("WH"), pipe.id("op"), pipe.id("b-user"), pipe.id("admin")
    traced, lettered, others, others_lettered = pipe.id("W1"), pipe.id("W2"), pipe.id("W3"), pipe.id("W4")
    newcomer, newcomers = pipe.id("web-new"), pipe.id("W6")  # a seller registered only once its events wait
    async with pool.acquire() as conn:
        await accounts.add(conn, admin, PASSWORD, "admin")
        await accounts.add(conn, operator, PASSWORD, "operator", warehouse_id=warehouse)
        await accounts.add(conn, other_user, PASSWORD, "seller", seller_id=other)
        await accounts.serve(conn, warehouse, [seller])

    # A parcel whose label no return carries: it waits, parked, until an operator matches it.
    relabelled, unlabelled = f.rma(seller, lines=[(pipe.id("SKU-A"), 1)]), pipe.id("W5")
    parcel = f.scan(seller, pipe.id("RELABELLED"), [(unlabelled, pipe.id("SKU-A"))])
    broken = orjson.loads(f.inspection(seller, lettered).model_dump_json())
    del broken["checks"]  # a schema violation: dead-lettered by grading
    others_broken = orjson.loads(f.inspection(other, others_lettered).model_dump_json())
    del others_broken["checks"]
    await _send(
        settings,
        [
            *_unit(seller, traced, sku=pipe.id("SKU-A")),
            *_unit(seller, lettered, sku=pipe.id("SKU-A"))[:2],
            (UNIT_INSPECTED.name, orjson.dumps(broken)),
            *_unit(other, others, sku=pipe.id("SKU-B")),
            *_unit(other, others_lettered, sku=pipe.id("SKU-B"))[:2],
            (UNIT_INSPECTED.name, orjson.dumps(others_broken)),
            (RMA.name, relabelled),
            (PARCEL_SCANNED.name, parcel),
            (UNIT_INSPECTED.name, f.inspection(seller, unlabelled, "A")),
            *_unit(newcomer, newcomers),
        ],
    )

    # A parked parcel is reported as unmatched after a second (by intake's sweep, every 30 s).
    env = {**os.environ, "REBOUND_UNMATCHED_PARCEL_AFTER_S": "1"}
    with Fleet(log_dir=tmp_path / "logs", services=WITH_CONSOLE, env=env) as fleet:
        await wait_until_caught_up(settings.kafka_bootstrap_servers, pool, timeout=180, services=WITH_CONSOLE)
        others_case = await pool.fetchval(
            "SELECT case_id::text FROM console.cases WHERE seller_id = $1 AND kind = 'schema_violation'", other
        )
        assert others_case is not None, "the other seller's broken inspection is a case"

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])

            # A wrong password is refused, on the sign-in page.
            page = await (await browser.new_context()).new_page()
            await page.goto(console_url + "/login")
            await page.get_by_label("User name").fill(operator)
            await page.get_by_label("Password").fill("not the password")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")

            # The operator's queue holds the warehouse's seller's dead letter, not the other seller's.
            page = await _sign_in(browser, console_url, operator)
            queue = page.get_by_role("table")
            await expect(queue.get_by_role("link", name="dead letter: schema_violation")).to_have_count(1)
            await expect(queue).not_to_contain_text(other)
            await queue.get_by_role("link", name="dead letter: schema_violation").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Dead letter: schema_violation")
            await expect(page.locator("#case-status")).to_have_text("open")

            # As it was, it is still invalid: refused with the reason, the case stays open.
            await page.get_by_role("button", name="Replay and resolve").click()
            await expect(page.get_by_role("status")).to_contain_text("checks: Field required")
            await expect(page.locator("#case-status")).to_have_text("open")

            # Corrected, it is sent again; the pipeline grades the unit and adjusts its stock.
            await page.get_by_label("Message to send again").fill(
                orjson.dumps({**broken, "checks": f.CHECKS["A"]}).decode()
            )
            await page.get_by_role("button", name="Replay and resolve").click()
            await expect(page.get_by_role("status")).to_contain_text(f"as event {broken['event_id']}")
            await expect(page.locator("#case-status")).to_have_text("resolved")
            await expect(page.get_by_role("table")).to_contain_text(f"{operator}replay")

            await page.get_by_role("link", name="Unit trace").click()
            await page.get_by_label("LPN, tracking number, return id, order id, SKU or buyer").fill(lettered)
            await page.get_by_role("button", name="Trace").click()
            await _reload_until(page, _shows(page, "storefront.stock-adjustments.v1"), "the replayed unit's adjustment")
            steps = await page.get_by_role("table").inner_text()
            assert "graded A (revision 1)" in steps, steps

            # The parked parcel's case: matched by the order id of its return, its unit is graded
            # and its stock adjusted.
            await page.goto(f"{console_url}/cases?kind=unmatched_parcel")
            unmatched = page.get_by_role("link", name="exception: unmatched_parcel")
            await _reload_until(page, unmatched.count, "the parked parcel's unmatched_parcel case")
            await page.get_by_role("link", name="Waiting").click()
            await expect(page.get_by_role("table").first).to_contain_text(parcel.tracking_number)
            await page.go_back()
            await unmatched.click()
            await expect(page.locator("main")).to_contain_text(f"Parcel {parcel.tracking_number}'s units")
            await page.get_by_label("Its return order").fill(relabelled.order_id)
            await page.get_by_role("button", name="Match and resolve").click()
            await expect(page.get_by_role("status")).to_contain_text(f"matched to return {relabelled.return_id}")
            await expect(page.locator("#case-status")).to_have_text("resolved")
            await page.goto(f"{console_url}/trace?q={unlabelled}")
            await _reload_until(page, _shows(page, "storefront.stock-adjustments.v1"), "the matched unit's adjustment")
            steps = await page.get_by_role("table").inner_text()
            assert f"parcel {parcel.tracking_number} matched to return {relabelled.return_id}" in steps, steps
            await page.goto(f"{console_url}/waiting")
            await expect(page.locator("main")).not_to_contain_text(parcel.tracking_number)

            # The first unit, end to end, in time order.
            await page.goto(f"{console_url}/trace?q={traced}")
            await expect(page.get_by_role("heading", level=2)).to_contain_text(f"Unit {traced}")
            rows = await page.get_by_role("table").locator("tbody > tr > td:nth-child(2)").all_inner_texts()
            for topic in (
                "returns.rma.v1",
                "wms.parcel-scanned.v1",
                "wms.unit-inspected.v1",
                "returns.unit-graded.v1",
                "storefront.stock-adjustments.v1",
            ):
                assert rows.count(topic) == 1, (topic, rows)
            assert rows.index("returns.rma.v1") < rows.index("returns.unit-graded.v1")
            assert rows.index("returns.unit-graded.v1") < rows.index("storefront.stock-adjustments.v1")

            # Neither the other seller's unit nor its case nor its stock, whatever the URL.
            await page.goto(f"{console_url}/trace?q={others}")
            await expect(page.locator("main")).to_contain_text(f"No unit your account may see is named by “{others}”")
            answer = await page.goto(f"{console_url}/cases/{others_case}")
            assert answer is not None and answer.status == 404
            await page.goto(f"{console_url}/stock")
            await expect(page.get_by_role("table").first).to_contain_text(pipe.id("SKU-A"))
            await expect(page.get_by_role("table").first).not_to_contain_text(pipe.id("SKU-B"))

            # A form posted without its CSRF token (as from another site) is refused.
            forged = await page.request.post(
                f"{console_url}/cases/{others_case}/dismiss", form={"reason": "forged"}, max_redirects=0
            )
            assert forged.status == 403

            # The other seller's user sees their own case, may not act on it, and nothing of the first seller's.
            theirs = await _sign_in(browser, console_url, other_user)
            await expect(theirs.get_by_role("table")).to_contain_text(other)
            await expect(theirs.get_by_role("table")).not_to_contain_text(seller)
            await theirs.goto(f"{console_url}/cases/{others_case}")
            await expect(theirs.get_by_role("button", name="Replay and resolve")).to_have_count(0)
            token = next(c["value"] for c in await theirs.context.cookies() if c["name"] == "csrftoken")
            refused = await theirs.request.post(
                f"{console_url}/cases/{others_case}/dismiss", form={"csrftoken": token, "reason": "mine"}
            )
            assert refused.status == 403
            lettered_case = await pool.fetchval(
                "SELECT case_id::text FROM console.cases WHERE seller_id = $1 AND kind = 'schema_violation'", seller
            )
            answer = await theirs.goto(f"{console_url}/cases/{lettered_case}")
            assert answer is not None and answer.status == 404
            for query in (traced, pipe.id("SKU-A")):
                await theirs.goto(f"{console_url}/trace?q={query}")
                shown = await theirs.locator("main").inner_text()
                assert "No unit your account may see" in shown and seller not in shown, shown
            await theirs.goto(f"{console_url}/stock")
            await expect(theirs.get_by_role("table").first).to_contain_text(pipe.id("SKU-B"))
            await expect(theirs.get_by_role("table").first).not_to_contain_text(pipe.id("SKU-A"))

            # An admin registers the unknown seller from one of its cases: its three waiting events
            # are sent again, and its unit reaches the shop.
            page = await _sign_in(browser, console_url, admin, "/cases?kind=unknown_seller")
            await page.get_by_role("row").filter(has_text=newcomer).first.get_by_role("link").click()
            await page.get_by_label(f"Register seller {newcomer} as").fill("Newcomer Ltd")
            await page.get_by_role("button", name="Register and replay").click()
            await expect(page.get_by_role("status")).to_contain_text(
                f"Seller {newcomer} registered; 3 of its events sent again"
            )
            await page.goto(f"{console_url}/trace?q={newcomers}")
            await _reload_until(page, _shows(page, "storefront.stock-adjustments.v1"), "the newcomer's adjustment")
            await browser.close()

        assert fleet.dead() == [], "a service died"
    assert await pool.fetchval("SELECT name FROM rebound.sellers WHERE seller_id = $1", newcomer) == "Newcomer Ltd"
    assert (await pool.fetchval("SELECT status FROM console.cases WHERE case_id = $1::uuid", others_case)) == "open"
