"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright) against the demo line.

Each page is opened as an engineer would, at 1280x800, and must render
without console errors and without sideways scrolling; a screenshot of each
is written to test-artifacts/browser/. One demo line serves the module.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.browser.demo_line import VIEWER_KEY, DemoLine

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
WIDTH, HEIGHT = 1280, 800
UI_BUDGET_BYTES = 300_000  # the whole UI with its libraries, as a line-side PC loads it
WAIT_MS = 30_000


def poll(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """The predicate's first truthy value; the timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    demo = DemoLine(tmp_path_factory.mktemp("browser")).start()
    try:
        yield demo
    finally:
        demo.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
                    "(make test installs it; by hand: apt-get install --no-install-recommends chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Python Playwright is missing: pip install -e '.[test]' installs the pinned version")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """One browser tab at 1280x800 that records console errors and what it loaded."""

    def __init__(self, browser, base: str):
        self.base = base
        self.page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[tuple[str, str]] = []  # (message, URL it is about)
        self.loaded: dict[str, int] = {}
        self.page.on("console", lambda m: m.type == "error" and self.errors.append((m.text, m.location.get("url", ""))))
        self.page.on("pageerror", lambda e: self.errors.append((str(e), "")))
        self.page.on("requestfailed", lambda r: self.errors.append(("request failed", r.url)))
        self.page.on("response", self._response)

    def _response(self, response) -> None:
        if not response.url.startswith(self.base + "/api/"):
            try:
                self.loaded[response.url] = len(response.body())
            except Exception as exc:  # a body can vanish when the page navigates on; say which
                self.errors.append((f"no body: {exc}", response.url))

    def open(self, route: str) -> Any:
        self.page.goto(f"{self.base}/{route}")
        return self.page

    def check(self, name: str, refused: tuple[str, ...] = ()) -> None:
        """No console errors, no sideways scrolling, and a screenshot as an artifact.

        Chromium logs every HTTP error answer as a console error; `refused` names the API calls the test
        expects to be refused (the page shows their reason), and only those are let through.
        """
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        unexpected = [(text, url) for text, url in self.errors
                      if not (text.startswith("Failed to load resource") and any(r in url for r in refused))]
        assert unexpected == [], unexpected
        width = self.page.evaluate("document.documentElement.scrollWidth")
        assert width <= WIDTH, f"{name}: the page is {width} px wide at {WIDTH} px: it scrolls sideways"

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def tab(browser, line):
    t = Page(browser, line.url)
    try:
        yield t
    finally:
        t.close()


def test_line_overview_is_live_and_small(tab, line):
    page = tab.open("#/line")
    page.wait_for_selector(".tile h3 .state")
    assert page.locator(".tile").count() == 4
    stages = page.locator(".stage > h2").all_inner_texts()
    assert [s.lower() for s in stages] == ["coating", "winding", "formation"]  # the line as it flows
    coater = page.locator('.tile[data-id="coater1"]')
    assert "m/min" in coater.locator('[data-path="web.line_speed"]').inner_text()
    assert "mode" in coater.inner_text() and "authority" in coater.inner_text() and "units/h" in coater.inner_text()

    def values() -> str:
        return " | ".join(page.locator(".tile .kv b").all_inner_texts())
    first = values()
    poll(lambda: values() != first, "a key value to change on the line overview", timeout=30)
    page.wait_for_load_state("networkidle")
    total = sum(tab.loaded.values())
    assert total < UI_BUDGET_BYTES, f"the UI loaded {total:,} bytes: {tab.loaded}"
    assert any(u.endswith("uPlot.iife.min.js") for u in tab.loaded)
    tab.check("line")


def test_a_trend_shows_history_for_a_chosen_range(tab):
    page = tab.open("#/equipment/coater1")
    page.wait_for_selector("#trend canvas")
    page.click('#t-range button[data-span="900"]')
    poll(lambda: page.locator("#t-status").inner_text().endswith("ms") and
         int(page.locator("#trend").get_attribute("data-points") or 0) > 0, "the 15 min trend to load")
    assert "samples" in page.locator("#t-status").inner_text()  # 15 min is drawn from raw samples
    poll(lambda: int(page.locator("#trend").get_attribute("data-live") or 0) >= 2, "live samples to extend the trend")
    assert "web.line_speed (m/min)" in page.locator("#trend .u-legend").inner_text()
    page.click("#t-range button[data-custom]")  # a custom range, prefilled with the last hour
    assert page.locator("#t-range input[data-from]").input_value()
    page.click("#t-range button[data-apply]")
    poll(lambda: "averages of 5 s" in page.locator("#t-status").inner_text(), "the custom hour in 5 s buckets")
    page.click('#t-range button[data-span="86400"]')
    poll(lambda: "averages of 120 s" in page.locator("#t-status").inner_text(), "the 24 h trend of bucket averages")
    groups = page.locator("#vars details.group summary").all_inner_texts()
    assert "web" in groups and "coating_head" in groups
    tab.check("machine-coater1")


def test_the_channel_grid_shows_64_channels_in_numeric_order(tab):
    page = tab.open("#/equipment/formation1")
    page.wait_for_selector("#ch-grid .ch")
    poll(lambda: page.locator("#ch-grid .ch").count() == 64, "64 channels in the grid")
    assert page.locator("#ch-grid .ch").all_inner_texts() == [str(i) for i in range(1, 65)]
    page.hover('#ch-grid .ch[data-ch="12"]')
    info = page.locator("#ch-info").inner_text()
    assert info.startswith("channel 12 ·") and " V" in info and " A" in info and "°C" in info, info
    options = page.locator('#vars select[data-pick="channel"] option').all_inner_texts()
    assert options == [str(i) for i in range(1, 65)]  # channel 2 before channel 10
    page.click('#ch-grid .ch[data-ch="10"]')
    page.wait_for_selector("#ch-curve canvas")
    assert page.locator("#ch-title").inner_text().startswith("channel 10")
    assert "channel[10].voltage (V)" in page.locator("#ch-curve .u-legend").inner_text()
    page.click("#ch-program")  # the curve of the cell's own step program
    poll(lambda: "program since" in page.locator("#ch-title").inner_text(), "the channel's program start")
    tab.check("machine-formation1")


def test_a_command_is_refused_with_its_reason(tab):
    """Unhold: refused in every PackML state but Held, which nothing on the demo line enters."""
    page = tab.open("#/equipment/coater1")
    page.wait_for_selector('#commands button[data-cmd="Unhold"]')
    page.click('#commands button[data-cmd="Unhold"]')
    dialog = page.locator("dialog#confirm")
    assert dialog.is_visible() and "Send Unhold to coater1?" in dialog.inner_text()
    page.click("#confirm-ok")
    result = page.locator("#cmd-result")
    poll(lambda: result.inner_text().startswith("409"), "the refusal of Unhold")
    text = result.inner_text()
    assert "cannot_perform_now" in text or "already_in_state" in text, text
    reason = text.split(": ", 1)[1]
    assert "Unhold" in reason and len(reason) > 20, f"no reason given: {text}"  # the gateway's sentence, shown whole
    assert "refused" in result.get_attribute("class")
    tab.check("command-refused", refused=("/api/v1/equipment/coater1/commands/Unhold",))


def test_commands_are_hidden_from_a_viewer(browser, line):
    """Behind API keys, with a viewer's key entered earlier (the page keeps it in localStorage)."""
    tab = Page(browser, line.viewer_url)
    try:
        tab.page.add_init_script(f"localStorage.setItem('linegw.key', {json.dumps(VIEWER_KEY)})")
        page = tab.open("#/equipment/coater1")
        poll(lambda: "viewer" in page.locator("#who").inner_text(), "the viewer's role in the header")
        page.wait_for_selector("#commands span")
        assert page.locator("#commands button").count() == 0
        text = page.locator("#commands").inner_text()
        assert "Commands are hidden" in text and "role 'viewer'" in text, text
        page.wait_for_selector("#trend canvas")  # a viewer still reads everything
        tab.check("viewer-machine")
    finally:
        tab.close()


def test_an_alarm_is_acknowledged_from_the_alarms_page(tab, line):
    # coater1 speaks the spec natively, AcknowledgeAlarm included (the winders' vendor maps have no such command).
    code = next(a.code for a in line.runtime.spec.alarms("coater") if not a.stop_reason)
    line.call(lambda: line.sims.simulators["coater1"].machine.raise_alarm(code))
    active = f"{line.url}/api/v1/alarms?active=true&equipment=coater1"
    poll(lambda: any(a["code"] == code for a in get_json(active)), "the alarm to be active")
    page = tab.open("#/alarms")
    button = page.locator(f'#active button[data-ack="{code}"][data-eq="coater1"]')
    button.wait_for()
    button.click()
    poll(lambda: page.locator("#ack-result").inner_text().startswith("200 ok"), "the acknowledgement's answer")
    poll(lambda: any(a["code"] == code and a["acknowledged"] for a in get_json(active)), "the alarm acknowledged")
    poll(lambda: button.count() == 0 and "acknowledged" in page.locator("#active").inner_text(),
         "the active table to show the alarm acknowledged")
    poll(lambda: "by local" in page.locator("#history").inner_text(), "the history to show who acknowledged")
    assert page.locator("#pareto .bar").count() >= 1
    tab.check("alarms")
    line.call(lambda: line.sims.simulators["coater1"].machine.clear_alarm(code))


def test_a_cell_is_traced_both_ways(tab, line):
    def cell_from_line_rolls() -> str | None:
        """A cell whose jelly roll the line's winder made (the first trays' cells come from placeholders)."""
        events = get_json(f"{line.url}/api/v1/events?equipment=formation1&type=UnitProcessed&limit=200")
        for e in events:
            tree = get_json(f"{line.url}/api/v1/trace/{e['payload']['unit_id']}")
            if any(not child.get("note") for child in tree.get("made_from", [])):
                return tree["unit_id"]
        return None
    cell = poll(cell_from_line_rolls, "a cell made from a jelly roll of this line", timeout=150)
    page = tab.open("#/trace")
    page.fill("#t-id", cell)
    page.click("#t-form button[type=submit]")
    page.wait_for_selector("#made-from .node")
    assert page.url.endswith(f"#/trace/{cell}")  # the trace has a URL to share
    nodes = page.locator("#made-from .node")
    assert nodes.count() >= 3, nodes.all_inner_texts()  # cell, jelly roll, electrode rolls
    top = nodes.first.inner_text()
    assert cell in top and "formation1" in top and "Ah" in top, top
    jelly_roll = page.locator("#made-from ul.tree ul.tree .node a b").first.inner_text()
    tab.check("trace-cell")
    page.click(f'#made-from .node[data-unit="{jelly_roll}"] a[href^="#/trace/"]')
    page.wait_for_selector(f'#made-into .node[data-unit="{cell}"]')  # the jelly roll's page shows the cell it made
    tab.check("trace-jelly-roll")


def test_api_docs_work_without_internet(tab, line):
    """Every request that does not go to the gateway is refused, as on an offline line-side PC."""
    outside: list[str] = []

    def only_the_gateway(route) -> None:
        if route.request.url.startswith(line.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()
    tab.page.route("**/*", only_the_gateway)
    page = tab.open("docs")
    page.wait_for_selector(".swagger-ui .opblock-tag")
    tags = page.locator(".swagger-ui .opblock-tag").all_inner_texts()
    assert any("history" in t for t in tags), tags
    assert page.locator(".swagger-ui .opblock").count() > 20
    assert outside == [], f"/docs reached outside the gateway: {outside}"
    tab.check("api-docs")


def test_performance_shows_oee_and_energy_per_machine(tab, line):
    poll(lambda: get_json(f"{line.url}/api/v1/oee?start=-1h")["machines"][0]["time_s"]["PRD"] > 0,
         "some production recorded")
    page = tab.open("#/performance")
    page.wait_for_selector("#oee-table tbody tr")
    page.wait_for_selector("#energy-table tbody tr")
    rows = {r.get_attribute("data-eq"): r.inner_text() for r in page.locator("#oee-table tbody tr").all()}
    assert set(rows) == {"coater1", "winder1", "winder2", "formation1"}, rows
    assert "%" in rows["coater1"] and page.locator("#oee-table .e10bar span").count() >= 4
    energy = page.locator("#energy-table").inner_text()
    assert "coater1" in energy and "no meter" in energy  # the dialect winders have no meter
    assert "difference" in page.locator("#energy-reconciled").inner_text()
    # A percentage, or a dash while the line has no OEE yet (the basis beside it says why).
    assert re.fullmatch(r"\d+\.\d %|–", page.locator("#line-oee").inner_text())
    tab.check("performance")


def test_a_cells_record_shows_each_stage_with_its_values_and_energy(tab, line):
    def cell_with_stages() -> str | None:
        for e in get_json(f"{line.url}/api/v1/events?equipment=formation1&type=UnitProcessed&limit=200"):
            rec = get_json(f"{line.url}/api/v1/record/{e['payload']['unit_id']}")
            if len(rec["stages"]) >= 2:
                return rec["unit_id"]
        return None
    cell = poll(cell_with_stages, "a cell recorded with its upstream stages", timeout=150)
    page = tab.open(f"#/trace/{cell}")
    page.click("#t-record")
    page.wait_for_selector(".stage-record")
    assert page.url.endswith(f"#/record/{cell}")
    stages = page.locator(".stage-record")
    assert stages.count() >= 2
    first = stages.first.inner_text()
    assert cell in first and "formation1" in first and "mean" in first, first
    assert page.locator(".stage-record table.pv tbody tr").count() > 0
    page.wait_for_selector("#r-energy")
    assert "kWh" in page.locator("#r-energy").inner_text()
    tab.check("record")
