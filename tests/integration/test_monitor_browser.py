"""The monitor in a real headless Chromium (Debian's package, driven by Playwright; nothing is
downloaded) against a real uvicorn serving the example project: counts and a run's status
change on the page without a reload, and a failed run is retried from the page.

Run by ``nox -s browser`` (and CI); the page's load time and the time from a change in the
database to the page showing it are printed. ``AUTOTASK_SCREENSHOT=path.png`` saves a
screenshot of the overview (the README's).
"""

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect, sync_playwright

from autotask.models import TaskRun

from .conftest import Server, free_port
from .test_monitor_asgi import staff_cookies

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("AUTOTASK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API keeps an event loop running in this thread, which Django takes for
    # an async context: the test's own ORM calls (creating rows) are safe all the same.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            yield launched
            launched.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser: Browser, start_server: Callable[..., Server]) -> Iterator[Page]:
    server = start_server(SECRET_KEY=settings.SECRET_KEY)
    yield from _staff_page(browser, server)


def _staff_page(browser: Browser, server: Server) -> Iterator[Page]:
    """A page of a new browser context logged in as a superuser of the test database."""
    context = browser.new_context(base_url=server.base_url, viewport={"width": 1280, "height": 900})
    context.add_cookies(
        [
            {"name": n, "value": v, "url": server.base_url}
            for n, v in staff_cookies(superuser=True).items()
        ]
    )
    opened = context.new_page()
    yield opened
    context.close()


def _mark_the_document(page: Page) -> None:
    """A reload would lose this; the tests check it is still there."""
    page.evaluate("window.notReloaded = true")


def _not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.notReloaded === true"))


def _an_hour_of_history() -> None:
    """Finished runs over the last hour in two queues, and runs waiting for later: what the
    overview of a system that has been running looks like (and the README's screenshot)."""
    now = timezone.now()
    rows = []
    for minute in range(60):
        at = now - timezone.timedelta(minutes=minute)
        for n in range(5 + (minute * 7) % 11):
            queue, failed = ("mail", n == 1 and minute % 4 == 0) if n % 3 else ("reports", False)
            rows.append(TaskRun(name="shop.tasks.send_receipt", args=[n], queue=queue,
                                status="error" if failed else "done", attempts=1,
                                started_at=at, finished_at=at))  # fmt: skip
    later = now + timezone.timedelta(hours=1)
    rows += [
        TaskRun(name="shop.tasks.slow", args=[n], queue="reports", run_at=later) for n in range(4)
    ]
    TaskRun.objects.bulk_create(rows)


def test_the_overview_shows_counts_change_live(page: Page) -> None:
    _an_hour_of_history()
    began = time.monotonic()
    page.goto("/autotask/")
    page.wait_for_load_state("load")
    loaded = time.monotonic() - began
    expect(page.locator("#live-state")).to_have_text("live", timeout=5000)
    _mark_the_document(page)
    for _ in range(3):
        TaskRun.objects.create(name="shop.tasks.slow", args=[0.2], queue="browser")
    written = time.monotonic()
    row = page.locator('tr[data-queue="browser"]')
    expect(row).to_be_visible(timeout=5000)
    shown = time.monotonic() - written
    expect(row.locator('[data-field="done_last_hour"]')).to_have_text("3", timeout=10000)
    expect(page.locator('tr[data-queue="reports"] [data-field="waiting"]')).to_have_text("4")
    expect(page.locator('tr[data-queue="reports"] [data-field="due"]')).to_have_text("0")
    assert page.locator("#chart rect.done").count() >= 60  # a bar for every minute
    assert page.locator("#chart rect.error").count() >= 10
    leader = page.locator("#workers tbody tr", has_text="leader")
    expect(leader).to_have_count(1)
    assert _not_reloaded(page)
    print(f"\nmonitor: overview loaded in {loaded * 1000:.0f} ms; a new queue's runs shown "
          f"{shown * 1000:.0f} ms after they were written")  # fmt: skip
    if os.environ.get("AUTOTASK_SCREENSHOT"):
        page.screenshot(path=os.environ["AUTOTASK_SCREENSHOT"], full_page=True)


def test_a_run_page_follows_its_status_to_the_result(page: Page) -> None:
    run = TaskRun.objects.create(
        name="shop.tasks.slow", args=[1.0], run_at=timezone.now() + timezone.timedelta(seconds=2)
    )
    page.goto(f"/autotask/runs/{run.id}/")
    status = page.locator("#run-status")
    expect(status).to_have_text("waiting")
    _mark_the_document(page)
    expect(status).to_have_text("running", timeout=10000)
    expect(status).to_have_text("done", timeout=10000)
    expect(page.locator("#result")).to_contain_text('"slept": 1.0', timeout=5000)
    assert _not_reloaded(page)


def test_a_failed_run_is_retried_from_its_page(page: Page) -> None:
    error = {"type": "builtins.RuntimeError", "message": "supplier down", "traceback": "..."}
    run = TaskRun.objects.create(
        name="shop.tasks.fetch_price", args=["tea"], status="error", attempts=1,
        started_at=timezone.now(), finished_at=timezone.now(), error=error, errors=[error],
    )  # fmt: skip
    page.goto(f"/autotask/runs/{run.id}/")
    expect(page.locator("#run-status")).to_have_text("error")
    expect(page.get_by_text("supplier down").first).to_be_visible()
    page.locator("#retry").click()
    expect(page.get_by_text(f"Run #{run.id} is waiting again.")).to_be_visible()
    expect(page.locator("#run-status")).to_have_text("done", timeout=10000)
    expect(page.locator("#result")).to_contain_text('"sku": "tea"')
    run.refresh_from_db()
    assert run.status == "done"


def test_under_wsgi_the_overview_polls_and_still_changes_without_a_reload(
    browser: Browser, serve: Callable[..., Server]
) -> None:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "demo.wsgi:application",
        "--workers", "1", "--threads", "4", "--bind", f"127.0.0.1:{port}",
    ]  # fmt: skip
    server = serve(command, port, AUTOTASK_IS_ACTIVE="1", SECRET_KEY=settings.SECRET_KEY)
    for page in _staff_page(browser, server):
        page.goto("/autotask/")
        assert page.locator("body").get_attribute("data-live") == "poll"
        expect(page.locator("#live-state")).to_contain_text("refreshed", timeout=10000)
        _mark_the_document(page)
        for _ in range(2):
            TaskRun.objects.create(name="shop.tasks.slow", args=[0.1], queue="wsgi")
        row = page.locator('tr[data-queue="wsgi"]')
        expect(row.locator('[data-field="done_last_hour"]')).to_have_text("2", timeout=15000)
        assert _not_reloaded(page)
        # The static files came through gunicorn: the script that polls ran, and the sheet too.
        assert page.evaluate("getComputedStyle(document.body).margin") == "0px"
