"""The app in a real browser: Playwright driving Debian's Chromium (TESTING.md).

Uploads a photo, corrupts it, sends it to Denoise and denoises it, then runs a
10-step fine-tuning and waits for points on the live plot. Screenshots land in
artifacts/ for a person to look at.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import skimage.data

from helpers import DATA
from n2n.io import write_image

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is absent: install it with `apt-get install -y chromium`", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")



@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(server[1])
        yield page
        browser.close()


def test_corrupt_then_denoise(page, tmp_path):
    photo = tmp_path / "cat.png"
    write_image(photo, skimage.data.chelsea())  # 451 × 300
    page.locator("#clean-in input[type=file]").set_input_files(str(photo))
    page.locator("#clean-in img").first.wait_for()
    page.get_by_role("button", name="Corrupt", exact=True).click()
    page.locator("#noisy-a img").first.wait_for()
    page.locator("#noisy-b img").first.wait_for()
    sync_api.expect(page.get_by_label("PSNR of A vs clean (dB)")).to_have_value(re.compile(r"^(19|2[0-2])\.\d+$"))
    page.screenshot(path=str(ARTIFACTS / "corrupt.png"), full_page=True)

    page.get_by_role("button", name=re.compile("Send A to Denoise")).click()
    sync_api.expect(page.get_by_role("tab", name="Denoise")).to_have_attribute("aria-selected", "true")
    page.locator("#noisy-in img").first.wait_for()
    page.get_by_label("median filter").check()
    page.get_by_role("button", name="Denoise", exact=True).click()
    slider = page.locator("#slider img")
    sync_api.expect(slider).to_have_count(2, timeout=120_000)
    sync_api.expect(page.locator("#scores")).to_contain_text("median filter")
    sync_api.expect(page.locator("#scores")).to_contain_text("noisy input")
    sync_api.expect(page.locator("#source")).to_contain_text("served from")
    assert page.locator("#gallery img").count() == 3  # noisy input, the model, the median filter
    page.screenshot(path=str(ARTIFACTS / "denoise.png"), full_page=True)

    # the parameter slider follows the noise: its symbol, units and range
    page.get_by_role("tab", name="Corrupt").click()
    page.get_by_label("Noise", exact=True).click()
    page.get_by_role("option", name="bernoulli").click()
    sync_api.expect(page.locator("#param")).to_contain_text("p: fraction of pixels dropped")
    sync_api.expect(page.locator("#param input[type=range]")).to_have_attribute("max", "0.99")
    sync_api.expect(page.locator("#param input[type=number]")).to_have_value("0.5")


def test_finetune_shows_points_on_the_plot(page, photo_folder):
    page.get_by_role("tab", name="Fine-tune").click()
    page.locator("#ft-files input[type=file]").set_input_files([str(p) for p in sorted(photo_folder.glob("*.png"))])
    steps = page.locator("#ft-steps input[type=number]")
    steps.fill("10")
    steps.press("Enter")
    page.get_by_label("Train the clean-target twin alongside (Noise2Clean)").check()
    page.get_by_role("button", name="Start", exact=True).click()
    sync_api.expect(page.locator("#status")).to_contain_text("finished", timeout=180_000)
    sync_api.expect(page.locator("#status")).to_contain_text("step 10 / 10")
    for plot in ("#loss-plot", "#val-plot"):
        # Vega draws the curve as an SVG path or on a canvas; either way the plot is no longer empty
        curve = page.locator(f"{plot} canvas, {plot} svg path.mark-line, {plot} .mark-line").first
        sync_api.expect(curve).to_be_visible()
    page.locator("#preview img").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "finetune.png"), full_page=True)
    name = page.get_by_label("Fine-tuned model").input_value()
    assert name.startswith("finetuned-gaussian-")
    page.get_by_role("button", name=re.compile("Use in Denoise")).click()
    sync_api.expect(page.get_by_role("tab", name="Denoise")).to_have_attribute("aria-selected", "true")
    sync_api.expect(page.get_by_label("Model", exact=True)).to_have_value(name)
    page.get_by_role("tab", name="About").click()
    page.screenshot(path=str(ARTIFACTS / "about.png"), full_page=True)


def test_a_photo_with_camera_noise_gets_the_camera_model_without_a_setting(page, tmp_path):
    """Upload a photo with camera noise (demosaiced, processed, JPEG): the estimate line names it, the model
    that fits is chosen (camera; gaussian at stride 2 where no camera model is bundled), and Denoise uses it."""
    import numpy as np

    from n2n import hub
    from n2n.io import to_float
    from n2n.noise import corrupt

    clean = to_float(skimage.data.chelsea())
    photo = tmp_path / "phone.png"
    write_image(photo, np.rint(corrupt(clean, "camera", 5, np.random.default_rng(0)) * 255).astype(np.uint8))
    page.get_by_role("tab", name="Denoise").click()
    page.locator("#noisy-in input[type=file]").set_input_files(str(photo))
    sync_api.expect(page.locator("#estimate")).to_contain_text("camera noise, correlated between neighbouring pixels")
    expected = "camera" if "camera" in hub.bundled_names() else "gaussian"
    sync_api.expect(page.get_by_label("Model", exact=True)).to_have_value(expected)
    page.get_by_role("button", name="Denoise", exact=True).click()
    sync_api.expect(page.locator("#source")).to_contain_text(f"Model {expected} served from", timeout=120_000)
    if expected == "gaussian":
        sync_api.expect(page.locator("#source")).to_contain_text("pixel-shuffle stride 2")
    page.screenshot(path=str(ARTIFACTS / "denoise-camera.png"), full_page=True)


def test_an_iphone_heic_photo_is_shown_and_denoised(page, tmp_path):
    """A HEIC photo (iPhones' own format, which Chromium cannot draw): the input shows it as a PNG of its pixels,
    and the slider and the gallery show it beside its denoised result."""
    import numpy as np
    from PIL import Image

    from n2n.io import to_float
    from n2n.noise import corrupt

    noisy = corrupt(to_float(skimage.data.chelsea()), "camera", 5, np.random.default_rng(1))
    photo = tmp_path / "IMG_0001.HEIC"
    Image.fromarray(np.rint(noisy * 255).astype(np.uint8)).save(photo, format="HEIF", quality=90)
    page.get_by_role("tab", name="Denoise").click()
    # the type a Mac or a phone gives the file (Playwright's own table lacks HEIC, and Gradio refuses what is
    # not image/*)
    page.locator("#noisy-in input[type=file]").set_input_files(
        {"name": photo.name, "mimeType": "image/heic", "buffer": photo.read_bytes()})
    drawn = "(sel) => [...document.querySelectorAll(sel)].every(i => i.complete && i.naturalWidth > 0)"
    page.wait_for_function(f"() => document.querySelector('#noisy-in img')?.src.endsWith('IMG_0001.png') && "
                           f"({drawn})('#noisy-in img')")
    assert page.evaluate("document.querySelector('#noisy-in img').naturalWidth") == 451
    sync_api.expect(page.locator("#estimate")).to_contain_text("camera noise")
    page.get_by_role("button", name="Denoise", exact=True).click()
    sync_api.expect(page.locator("#slider img")).to_have_count(2, timeout=120_000)
    page.wait_for_function(f"() => ({drawn})('#slider img') && ({drawn})('#gallery img')")
    page.screenshot(path=str(ARTIFACTS / "denoise-heic.png"), full_page=True)


def test_a_heic_with_no_browser_type_is_taken_by_the_button_under_the_image(page, tmp_path):
    """Copied from an iPhone to a Windows PC, a HEIC photo has no MIME type in the browser, and gr.Image's own
    upload takes only image/* files: the button under the image takes it by its name, the image shows it as a PNG
    of its pixels and the noise estimate reads it, as after an upload."""
    import numpy as np
    from PIL import Image

    from n2n.io import to_float
    from n2n.noise import corrupt

    noisy = corrupt(to_float(skimage.data.chelsea()), "camera", 5, np.random.default_rng(2))
    photo = tmp_path / "IMG_0002.HEIC"
    Image.fromarray(np.rint(noisy * 255).astype(np.uint8)).save(photo, format="HEIF", quality=90)
    page.reload()
    page.get_by_role("tab", name="Denoise").click()
    page.locator("#noisy-in-pick").locator("xpath=../input[@type='file']").set_input_files(
        {"name": photo.name, "mimeType": "", "buffer": photo.read_bytes()})
    page.wait_for_function("() => document.querySelector('#noisy-in img')?.src.endsWith('IMG_0002.png') && "
                           "document.querySelector('#noisy-in img').naturalWidth === 451")
    sync_api.expect(page.locator("#estimate")).to_contain_text("camera noise")
    page.screenshot(path=str(ARTIFACTS / "denoise-heic-picker.png"), full_page=True)


@pytest.mark.skipif(not (DATA / "real" / "nam25").is_dir(), reason="needs ../shared/data/real/nam25")
def test_a_real_noisy_photo_through_estimate_denoise_adapt_and_learn(page):
    """A real DSLR photo as a visitor brings it (nam25's first: 512², JPEG, true RMS noise 3.6): the estimate
    line names camera noise and reads σ ≈ 3 (2.7 with the camera model), the camera model is chosen and denoises
    it; Adapt runs and says that the blind score is not to be trusted on camera noise; Learn measures on it why."""
    from n2n import hub

    if "camera" not in hub.bundled_names():
        pytest.skip("no bundled camera model")
    photo = DATA / "real" / "nam25" / "01_noise.png"
    page.reload()  # a fresh page: the test before leaves an estimate and a result of camera noise in place
    page.get_by_role("tab", name="Denoise").click()
    page.locator("#noisy-in input[type=file]").set_input_files(str(photo))
    estimate = page.locator("#estimate")
    sync_api.expect(estimate).to_contain_text("camera noise, correlated between neighbouring pixels", timeout=60_000)
    sigma = float(re.search(r"σ ≈ (\d+)", estimate.inner_text()).group(1))
    assert 2 <= sigma <= 5, estimate.inner_text()  # within 30 % of 3.6, as rounded to a whole number
    sync_api.expect(page.get_by_label("Model", exact=True)).to_have_value("camera")
    page.get_by_role("button", name="Denoise", exact=True).click()
    sync_api.expect(page.locator("#source")).to_contain_text("Model camera served from", timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "real-denoise.png"), full_page=True)

    seconds = page.get_by_role("spinbutton", name="seconds of training")
    seconds.fill(seconds.get_attribute("min"))
    seconds.press("Enter")
    page.locator("#adapt-btn").click()
    sync_api.expect(page.locator("#source")).to_contain_text("camera adapted to this photo", timeout=240_000)
    sync_api.expect(page.locator("#source")).to_contain_text("This photo holds camera noise")
    sync_api.expect(page.locator("#slider img")).to_have_count(2)
    page.screenshot(path=str(ARTIFACTS / "real-adapt.png"), full_page=True)

    page.get_by_role("tab", name="Learn").click()
    page.locator("#learn-in input[type=file]").set_input_files(str(photo))
    page.locator("#independence-btn").click()
    summary = page.locator("#independence-summary")
    sync_api.expect(summary).to_contain_text("Noise2Noise needs noise independent", timeout=60_000)
    sync_api.expect(page.locator("#independence-camera img")).to_have_count(1)
    page.locator("#independence-table").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "real-learn.png"), full_page=True)
