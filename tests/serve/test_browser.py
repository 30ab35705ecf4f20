"""The app in headless Chromium (Debian's, through Playwright's sync API): every step a
researcher takes, with a screenshot of each."""

from __future__ import annotations

import pytest
from browser import Shots, chromium_or_skip, serving


@pytest.fixture(scope="module")
def base(served, model):
    from saescope.serve.app import create_app
    from saescope.serve.state import Limits

    with serving(create_app([served], model, Limits(new_tokens=8))) as url:
        yield url


@pytest.fixture(scope="module")
def page(base):
    path = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True)
        tab = browser.new_page(viewport={"width": 1200, "height": 900})
        tab.set_default_timeout(20_000)
        yield tab
        browser.close()


def test_browse_search_neighbour_test_text_steer_and_map(page, base, served, tmp_path) -> None:
    shots = Shots(tmp_path / "screenshots")
    page.goto(f"{base}/i/tiny")
    assert page.locator("#features tr").count() > 1
    shots.take(page, "overview")

    page.fill("#search-form input[name=q]", "death")
    page.click("#search-form button")
    page.wait_for_selector("#hits")
    shots.take(page, "search")
    page.click("#hits tr:nth-child(2) a")
    page.wait_for_selector("text=Top activations")
    feature = int(page.url.rsplit("/", 1)[1])
    shots.take(page, "feature")

    page.click("#neighbours a >> nth=0")
    page.wait_for_url(lambda url: not url.endswith(f"/feature/{feature}"))
    page.wait_for_selector("text=Top activations")
    neighbour = int(page.url.rsplit("/", 1)[1])
    assert neighbour != feature

    page.goto(f"{base}/i/tiny/feature/{feature}")
    page.fill("#test-text", "The death of the king was mourned")
    page.wait_for_selector("#shaded span.tok")
    assert page.locator("#shaded span.tok").count() >= 5
    assert page.locator("#shaded span.tok").first.get_attribute("title")  # hover shows value
    shots.take(page, "test-text")

    page.click("#steer-link")
    page.wait_for_selector("#steer-form")
    assert f"clamp {feature}=" in page.input_value("textarea[name=edits]")
    page.fill("textarea[name=edits]", f"clamp {feature}=300")
    page.fill("textarea[name=prompt]", "The death of")
    page.fill("input[name=max_new_tokens]", "6")
    page.click("#steer-run")
    page.wait_for_selector("#continuations .steered")
    clean = page.inner_text("#continuations .clean")
    steered = page.inner_text("#continuations .steered")
    assert clean != steered
    shots.take(page, "steering")

    page.fill("#sweep-form input[name=values]", "0, 300")
    page.fill("#sweep-form input[name=vocabulary]", "death, king")
    page.fill("#sweep-form input[name=samples]", "2")
    page.fill("#sweep-form input[name=max_new_tokens]", "4")
    page.click("#sweep-run")
    page.wait_for_selector("#sweep-plot circle")
    shots.take(page, "sweep")

    page.goto(f"{base}/i/tiny/map")
    dot = page.locator("#map circle").nth(3)
    target = dot.get_attribute("data-f")
    dot.hover()
    assert page.locator("#tip").is_visible() and f"feature {target}" in page.inner_text("#tip")
    shots.take(page, "map")
    dot.click()
    page.wait_for_url(f"**/feature/{target}")

    page.goto(f"{base}/i/tiny/inspect?prompt=The%20death%20of%20the%20king")
    page.wait_for_selector("canvas[data-picture]")
    assert "Logit lens" in page.content()
    shots.take(page, "inspector")
    assert (tmp_path / "screenshots" / "steering.png").stat().st_size > 0
