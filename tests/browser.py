"""What the pages' browser tests share (tests/test_gateway_pages.py,
tests/test_city_pages.py): Debian's headless Chromium through Playwright, a
page whose test fails on any error in the browser's console, screenshots
kept under artifacts/, and axe-core (shipped in node_modules) on each page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "artifacts"
WAIT_MS = 30_000


def launch() -> Iterator[Any]:
    """The browser, for a fixture: `yield from launch()`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def new_page(browser: Any, shots: Path, **context: Any) -> Iterator[Any]:
    """A French page in Paris time, for a fixture: `yield from new_page(...)`.
    Its screenshots go to `shots`; any console error fails the test."""
    ctx = browser.new_context(locale="fr-FR", timezone_id="Europe/Paris", viewport={"width": 1280, "height": 900},
                              **context)
    ctx.set_default_timeout(WAIT_MS)
    page = ctx.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.shots = shots
    shots.mkdir(parents=True, exist_ok=True)
    yield page
    ctx.close()
    assert not problems, problems  # any error in the browser's console fails the test


def check(page: Any, name: str) -> None:
    """A screenshot, then axe-core on the page: no serious or critical violation."""
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)
    # evaluated through the DevTools protocol, so the page's own CSP (no inline script) stays on
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    violations = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"]});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                            nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
    }""")
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, (name, bad)
