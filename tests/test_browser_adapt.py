"""Adapt to this photo in a real browser (issue 13): Playwright driving Debian's Chromium uploads a
small noisy photo to the Denoise tab, sets the shortest training the slider allows and clicks
"Adapt to this photo", then waits for the pretrained ↔ adapted side-by-side, the gallery and the
summary. The screenshot goes to pytest's temporary folder (its path is printed) for a person to look at.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from helpers import photo
from n2n.io import from_float, write_image
from n2n.noise import corrupt

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is absent: install it with `apt-get install -y chromium`", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


@pytest.fixture
def page(server):
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(server[1])
        yield page
        browser.close()


def test_adapt_shows_pretrained_beside_adapted(page, tmp_path):
    # Gaussian σ = 15 with 5% salt-and-pepper on a 96 × 72 photo: a noise the bundled model never saw
    rng = np.random.default_rng(0)
    clean = photo(96)[:72]
    noisy = corrupt(clean, "gaussian", 15, rng)
    hit = rng.random(clean.shape[:2] + (1,)) < 0.05
    noisy = np.where(hit, (rng.random(clean.shape[:2] + (1,)) < 0.5).astype(np.float32), noisy)
    write_image(tmp_path / "noisy.png", from_float(np.clip(noisy, 0, 1), np.uint8))

    page.get_by_role("tab", name="Denoise").click()
    page.locator("#noisy-in input[type=file]").set_input_files(str(tmp_path / "noisy.png"))
    page.locator("#noisy-in img").first.wait_for()
    sync_api.expect(page.locator("#estimate")).to_contain_text("Noise estimate")  # the upload was read
    chosen = page.get_by_label("Model", exact=True).input_value()  # the upload chose the model that fits
    assert chosen in page.locator("#estimate").inner_text()
    seconds = page.get_by_role("spinbutton", name="seconds of training")
    low = seconds.get_attribute("min")
    seconds.fill(low)
    seconds.press("Enter")
    sync_api.expect(seconds).to_have_value(low)
    assert page.locator("#slider img").count() == 0  # nothing denoised yet
    page.locator("#adapt-btn").click()

    slider = page.locator("#slider img")
    sync_api.expect(slider).to_have_count(2, timeout=240_000)  # pretrained ↔ adapted
    sync_api.expect(page.locator("#source")).to_contain_text(f"{chosen} adapted to this photo")
    sync_api.expect(page.locator("#source")).to_contain_text("is now in your model list")
    sync_api.expect(page.locator("#gallery img")).to_have_count(3)  # noisy input, pretrained, adapted
    captions = [line.strip() for line in page.locator("#gallery").inner_text().splitlines() if line.strip()]
    unmarked = [caption.removeprefix("better · ") for caption in captions]
    assert any(c.startswith(f"pretrained · {chosen}") for c in unmarked), captions
    assert any(c.startswith("adapted") for c in unmarked), captions
    # the blind verdict: the summary names the better of the two, and exactly one of them is marked
    sync_api.expect(page.locator("#source")).to_contain_text(re.compile(r"Better: the (adapted|pretrained) result"))
    assert sum(c.startswith("better · ") for c in captions) == 1, captions  # first: never cut off
    for image in slider.all():  # both halves are loaded pictures, not broken links
        assert image.evaluate("img => img.complete && img.naturalWidth") == 96
    sync_api.expect(page.get_by_label("Model", exact=True)).to_have_value(re.compile(f"^{chosen}$"))
    shot = tmp_path / "adapt.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
