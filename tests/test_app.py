"""The app through its API: the real server, launched here, driven by gradio_client.

Images are tiny and runs a few steps, so this stays quick on two CPU cores.
"""
from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import skimage.data
from skimage.transform import resize

from helpers import DATA
from n2n import hub
from n2n.infer import denoise
from n2n.io import read_image, to_float, write_image
from n2n.metrics import psnr
from n2n.noise import corrupt
from ui import finetune, registry


@pytest.fixture(scope="module")
def clean_png(tmp_path_factory) -> Path:
    """A real photo (scikit-image's cat), 96 wide and 64 high: not square, so a swapped axis shows."""
    path = tmp_path_factory.mktemp("app") / "clean.png"
    image = resize(skimage.data.chelsea(), (64, 96), anti_aliasing=True)
    write_image(path, np.rint(image * 255).astype(np.uint8))
    return path


def noisy_png(clean_png: Path, noise="gaussian", param=25.0, seed=1,
              folder: Path | None = None) -> tuple[Path, np.ndarray]:
    """A noisy version of `clean_png`, written beside it (or into `folder`), and the clean image as float."""
    clean = to_float(read_image(clean_png, dtype=None))
    noisy = np.clip(corrupt(clean, noise, param, np.random.default_rng(seed)), 0, 1)
    path = (folder or clean_png.parent) / f"{clean_png.stem}_{noise}_{param}_{seed}.png"
    write_image(path, np.rint(noisy * 255).astype(np.uint8))
    return path, clean


def png(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im)


def test_corrupt_returns_two_noisy_pngs_with_their_psnr(client, clean_png):
    clean = read_image(clean_png)
    path_a, path_b, psnr_a, psnr_b = client.predict(handle_file(str(clean_png)), "gaussian", 25, 3, api_name="/corrupt")
    a, b = png(path_a), png(path_b)
    assert a.shape == b.shape == (64, 96, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, b), "the two realisations must be independent draws"
    # the PSNR shown is that of the file served, and what σ = 25 gives (20.2 dB before clipping)
    assert psnr_a == pytest.approx(psnr(clean, a), abs=0.01) and psnr_b == pytest.approx(psnr(clean, b), abs=0.01)
    assert 19.5 < psnr_a < 22.5
    # the same seed gives the same noise; a stronger noise, a lower PSNR
    again = client.predict(handle_file(str(clean_png)), "gaussian", 25, 3, api_name="/corrupt")
    assert np.array_equal(png(again[0]), a)
    assert client.predict(handle_file(str(clean_png)), "gaussian", 50, 3, api_name="/corrupt")[2] < psnr_a - 4


def test_corrupt_other_noises_use_their_own_default_parameter(client, clean_png):
    path, _, _, _ = client.predict(handle_file(str(clean_png)), "bernoulli", api_name="/corrupt")  # p = 0.5
    dropped = np.mean(png(path).max(axis=2) == 0)
    assert 0.4 < dropped < 0.6
    path, _, value, _ = client.predict(handle_file(str(clean_png)), "impulse", 0.1, api_name="/corrupt")
    assert 0.05 < np.mean(np.any(png(path) != np.rint(read_image(clean_png) * 255), axis=2)) < 0.15
    assert value > 10


def test_corrupt_keeps_bit_depth_and_alpha(client, clean_png, tmp_path):
    clean = read_image(clean_png)
    alpha = np.linspace(0, 1, clean.shape[1], dtype=np.float32)[None, :, None].repeat(clean.shape[0], axis=0)
    rgba = np.rint(np.concatenate([clean, alpha], axis=2) * 65535).astype(np.uint16)
    write_image(tmp_path / "rgba16.png", rgba)
    path, *_ = client.predict(handle_file(str(tmp_path / "rgba16.png")), "gaussian", 10, api_name="/corrupt")
    noisy = read_image(path, dtype=None)
    assert noisy.dtype == np.uint16 and noisy.shape == (64, 96, 4)
    assert np.array_equal(noisy[..., 3], rgba[..., 3]), "alpha passes through untouched"


def test_registry_says_where_a_model_came_from(tiny_checkpoint, monkeypatch):
    """LoadedModel's fields, so the UI need not parse `source`: a listed folder is local, a model
    fine-tuned here is finetuned; `source` reads as before."""
    monkeypatch.setitem(registry.EXTRA, "listed-here", tiny_checkpoint)
    monkeypatch.setitem(registry.FINETUNED, "made-here", tiny_checkpoint)
    for name, origin in (("listed-here", "local"), ("made-here", "finetuned")):
        try:
            loaded = registry.load(name)
            assert (loaded.origin, loaded.source, loaded.repo, loaded.note) == (origin, f"local:{name}", "", "")
        finally:
            registry.forget(name)


def test_the_source_line_gives_a_campaign_models_steps_in_all():
    """A campaign model's config "steps" is its last run's count; the line gives the steps in all."""
    from ui.denoise import describe_source

    loaded = registry.load("camera")
    total = loaded.config["campaign"]["total_steps"]
    assert total > loaded.config["steps"]
    assert f"noisy targets (Noise2Noise), {total:,} steps." in describe_source("camera", loaded)


def test_denoise_serves_the_model_and_compares_baselines(client, clean_png):
    noisy_path, clean = noisy_png(clean_png)
    noisy = png(noisy_path)
    (shown_noisy, denoised), gallery, table, download, source = client.predict(
        handle_file(str(noisy_path)), "tiny", "", ["nlm", "median"], handle_file(str(clean_png)), "gaussian", 25,
        api_name="/denoise")
    result = png(download)
    assert result.shape == noisy.shape and result.dtype == np.uint8
    assert np.array_equal(png(denoised), result) and np.array_equal(png(shown_noisy), noisy)
    # exactly what the library gives for this model and image
    assert np.array_equal(result, denoise(hub.load_model(registry.EXTRA["tiny"]), noisy))
    assert "tiny" in source and "local checkpoint" in source
    captions = [item["caption"].split(" · ")[0] for item in gallery]
    assert captions == ["noisy input", "tiny", "non-local means (OpenCV)", "median filter"]
    rows = {row[0]: dict(zip(table["headers"], row)) for row in table["data"]}
    assert list(rows) == ["noisy input", "n2n · tiny", "non-local means (OpenCV)", "median filter"]
    assert set(table["headers"]) == {"method", "PSNR (dB)", "SSIM", "seconds"}
    # the table's figures are those of the files served
    assert rows["noisy input"]["PSNR (dB)"] == pytest.approx(psnr(clean, noisy), abs=0.01)
    assert rows["n2n · tiny"]["PSNR (dB)"] == pytest.approx(psnr(clean, result), abs=0.01)
    nlm = png(gallery[2]["image"])
    assert rows["non-local means (OpenCV)"]["PSNR (dB)"] == pytest.approx(psnr(clean, nlm), abs=0.01)
    # a real denoiser raises PSNR (the tiny model has trained 3 steps: only the baselines can be held to it)
    assert rows["non-local means (OpenCV)"]["PSNR (dB)"] > rows["noisy input"]["PSNR (dB)"] + 2
    assert rows["median filter"]["PSNR (dB)"] > rows["noisy input"]["PSNR (dB)"] + 3
    assert rows["non-local means (OpenCV)"]["seconds"] >= 0


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_denoise_keeps_16_bit_rgb_16_bit(client, clean_png, tmp_path, suffix):
    """A 16-bit RGB PNG or TIFF comes back as a 16-bit PNG download (issue 13), the library's own answer,
    beside the baselines (also at 16 bits in the gallery)."""
    import cv2

    noisy_path, _ = noisy_png(clean_png)
    deep = png(noisy_path).astype(np.uint16) * 257 + np.arange(64 * 96 * 3, dtype=np.uint16).reshape(64, 96, 3) % 257
    path = tmp_path / f"deep{suffix}"
    assert cv2.imwrite(str(path), deep[..., ::-1])  # OpenCV writes BGR
    assert np.array_equal(read_image(path, dtype=None), deep)
    _, gallery, _, download, _ = client.predict(handle_file(str(path)), "tiny", "", ["median"], None, "gaussian", 25,
                                                api_name="/denoise")
    result = read_image(download, dtype=None)  # (Pillow alone would read a 16-bit RGB PNG as 8-bit)
    assert Path(download).suffix == ".png" and result.dtype == np.uint16 and result.shape == (64, 96, 3)
    assert np.array_equal(result, denoise(hub.load_model(registry.EXTRA["tiny"]), deep))
    assert read_image(gallery[-1]["image"], dtype=None).dtype == np.uint16


def test_denoise_and_corrupt_give_a_tagged_photo_its_colour_profile_back(client, clean_png, tmp_path):
    """A photo with an ICC profile (a phone's Display P3): the download, the slider, the gallery's results and
    Corrupt's noisy images carry it, so that the browser shows them in the photo's colours, as it shows the photo."""
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    noisy_path, _ = noisy_png(clean_png, seed=4)
    tagged = tmp_path / "IMG_0004.jpg"
    Image.fromarray(png(noisy_path)).save(tagged, quality=95, icc_profile=profile)
    (_, denoised), gallery, _, download, _ = client.predict(handle_file(str(tagged)), "tiny", "", ["median"],
                                                            api_name="/denoise")
    for path in (download, denoised, *(item["image"] for item in gallery[1:])):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.info.get("icc_profile") == profile, path
    a, b, *_ = client.predict(handle_file(str(tagged)), "gaussian", 25, 0, api_name="/corrupt")
    for path in (a, b):
        with Image.open(path) as im:
            assert im.info.get("icc_profile") == profile, path


def test_denoise_without_reference_gives_no_scores(client, clean_png):
    noisy_path, _ = noisy_png(clean_png, seed=2)
    _, gallery, table, download, _ = client.predict(handle_file(str(noisy_path)), "tiny", api_name="/denoise")
    assert table["headers"] == ["method", "seconds"] and len(gallery) == 2
    assert png(download).shape == (64, 96, 3)


@pytest.mark.skipif("gaussian" not in hub.bundled_names(), reason="the bundled gaussian checkpoint is not trained yet")
def test_bundled_gaussian_model_raises_psnr(client, clean_png):
    noisy_path, clean = noisy_png(clean_png, seed=3)
    (_, denoised), _, _, _, source = client.predict(handle_file(str(noisy_path)), "gaussian", api_name="/denoise")
    gain = psnr(clean, png(denoised)) - psnr(clean, png(noisy_path))
    assert gain > 3, f"the bundled gaussian model gained only {gain:.2f} dB at σ = 25"
    assert "bundled" in source
    from n2n.infer import resolve_precision
    assert f"Ran in {resolve_precision('auto')} on the CPU" in source  # the precision and device that served it


def test_finetune_streams_progress_and_ends_with_a_checkpoint(client, photo_folder, clean_png, tmp_path):
    files = [handle_file(str(p)) for p in sorted(photo_folder.glob("*.png"))[:3]]
    job = client.submit(files, "gaussian", steps=5, twin=True, api_name="/finetune")
    final = job.result(timeout=300)
    updates = job.outputs()
    assert len(updates) >= 2, "the run must stream updates, not only its end"
    loss_plot, val_plot, preview, status, archive, name = final
    loss = plot_points(loss_plot)
    assert sorted({p["run"] for p in loss}) == ["N2C (clean targets)", "N2N (noisy targets)"]
    assert sorted(p["step"] for p in loss if p["run"].startswith("N2N")) == [1, 2, 3, 4, 5]
    assert all(np.isfinite(p["loss"]) for p in loss)
    val = plot_points(val_plot)
    assert {p["run"] for p in val} == {p["run"] for p in loss} and all(0 < p["psnr"] < 60 for p in val)
    for run in {p["run"] for p in val}:  # from scratch, five steps already move the output towards the images
        curve = [p["psnr"] for p in sorted(val, key=lambda p: p["step"]) if p["run"] == run]
        assert len(curve) == 5 and curve[-1] > curve[0], (run, curve)
    assert "step 5 / 5" in status and "finished" in status and name.startswith("finetuned-gaussian-")
    assert png(preview).shape[1] > 2 * png(preview).shape[0], "preview: noisy | N2N | N2C side by side"
    # the download is a checkpoint that loads with strict keys, trained 5 steps
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path)
        assert f"{name}/model.safetensors" in z.namelist() and f"{name}/n2c/config.json" in z.namelist()
    loaded = hub.load_dir(tmp_path / name)
    assert loaded.config["steps"] == 5 and not loaded.config["clean_targets"]
    assert json.loads((tmp_path / name / "n2c" / "config.json").read_text())["clean_targets"] is True
    # and the app serves it by name
    noisy_path, _ = noisy_png(clean_png, seed=4)
    (_, denoised), _, _, _, source = client.predict(handle_file(str(noisy_path)), name, api_name="/denoise")
    assert "fine-tuned in this session" in source and png(denoised).shape == (64, 96, 3)


@pytest.mark.parametrize("mode", ["pairs", "single"])
def test_finetune_on_noisy_data_only(client, photo_folder, tmp_path, mode):
    """Real noisy pairs (here: two draws of the noise on each photo) and single noisy images (Neighbor2Neighbor)."""
    first, second = [], []
    for k, path in enumerate(sorted(photo_folder.glob("*.png"))[:2]):
        for shots, seed in ((first, 10 + k), (second, 20 + k)):
            shots.append(handle_file(str(noisy_png(path, seed=seed, folder=tmp_path)[0])))
    second_shots = second if mode == "pairs" else None
    *_, status, archive, name = client.submit(first, "gaussian", mode, second_shots, steps=2, init="tiny", loss="l1",
                                              api_name="/finetune").result(timeout=180)
    assert "step 2 / 2" in status and "no validation PSNR" in status
    with zipfile.ZipFile(archive) as z:
        config = json.loads(z.read(f"{name}/config.json"))
    assert config["mode"] == mode and config["steps"] == 2 and config["loss"] == "l1"
    assert config["train_config"]["init"] == str(registry.EXTRA["tiny"])


def test_finetune_stops_when_asked(client, photo_folder):
    job = client.submit([handle_file(str(next(photo_folder.glob("*.png"))))], "gaussian", steps=2000,
                        api_name="/finetune")
    deadline = time.monotonic() + 120
    while not any(plot_points(update[0]) for update in job.outputs()) and time.monotonic() < deadline:
        time.sleep(0.2)
    client.predict(api_name="/stop")
    _, _, _, status, archive, name = job.result(timeout=120)
    assert "stopped" in status and archive.endswith(".zip") and name
    steps = max(p["step"] for p in plot_points(job.outputs()[-1][0]))
    assert 1 <= steps < 2000
    assert not finetune.STOP_FLAGS, "a finished run's stop flag is kept: one per session, for the server's lifetime"


def test_zero_shot_denoises_one_image(client, clean_png):
    noisy_path, clean = noisy_png(clean_png, seed=5)
    *_, status, result, name = client.submit([handle_file(str(noisy_path))], "gaussian", "zero-shot", steps=300,
                                             api_name="/finetune").result(timeout=300)
    denoised = png(result)
    assert denoised.shape == (64, 96, 3) and "finished" in status and name == ""
    assert psnr(clean, denoised) > psnr(clean, png(noisy_path)) + 1


def test_zero_shot_keeps_bit_depth_and_alpha(client, clean_png, tmp_path):
    noisy_path, _ = noisy_png(clean_png, seed=7)
    noisy = read_image(noisy_path)
    alpha = np.linspace(0, 1, noisy.shape[1], dtype=np.float32)[None, :, None].repeat(noisy.shape[0], axis=0)
    rgba = np.rint(np.concatenate([noisy, alpha], axis=2) * 65535).astype(np.uint16)
    write_image(tmp_path / "rgba16.png", rgba)
    *_, status, result, _ = client.submit([handle_file(str(tmp_path / "rgba16.png"))], "gaussian", "zero-shot",
                                          steps=2, api_name="/finetune").result(timeout=300)
    denoised = read_image(result, dtype=None)
    assert "finished" in status and denoised.dtype == np.uint16 and denoised.shape == (64, 96, 4)
    assert np.array_equal(denoised[..., 3], rgba[..., 3]), "alpha passes through untouched"


def test_bad_input_is_refused_in_plain_words_and_the_app_keeps_serving(client, clean_png, tmp_path):
    noisy_path, _ = noisy_png(clean_png, seed=6)
    with pytest.raises(AppError, match="Unknown model 'no-such-model'"):
        client.predict(handle_file(str(noisy_path)), "no-such-model", api_name="/denoise")
    with pytest.raises(AppError, match="Cannot load 'nobody/nothing'"):  # the Hub: unreachable here, or no such repo
        client.predict(handle_file(str(noisy_path)), "tiny", "nobody/nothing", api_name="/denoise")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(noisy_path.read_bytes()[:-40])
    with pytest.raises(AppError, match="truncated"):
        client.predict(handle_file(str(truncated)), "tiny", api_name="/denoise")
    with pytest.raises(AppError, match=r"outside \[0.0, 0.99\]"):
        client.predict(handle_file(str(clean_png)), "bernoulli", 0.995, api_name="/corrupt")
    with pytest.raises(AppError, match="clean-target twin needs clean images"):
        client.predict([handle_file(str(clean_png))], "gaussian", "single", twin=True, steps=2, api_name="/finetune")
    with pytest.raises(AppError, match="No image"):
        client.predict(None, "gaussian", api_name="/corrupt")
    assert png(client.predict(handle_file(str(clean_png)), "gaussian", api_name="/corrupt")[0]).shape == (64, 96, 3)


def plot_points(plot) -> list[dict]:
    """The rows of a LinePlot value as the client receives it."""
    if not plot:
        return []
    plot = plot.get("value", plot) if isinstance(plot, dict) else plot
    rows = [dict(zip(plot["columns"], row)) for row in plot["data"]]
    return [row for row in rows if row["step"] > 0]  # step 0: the app's empty anchor point of each run


def test_denoise_at_a_pixel_shuffle_stride_and_with_the_ensemble(client, clean_png):
    """The stride and ensemble inputs (last, with defaults): the library's answer with them, said in the source
    line; a bad stride refused in plain words."""
    noisy_path, _ = noisy_png(clean_png, noise="camera", param=5, seed=4)
    noisy = png(noisy_path)
    (_, denoised), _, _, _, source = client.predict(handle_file(str(noisy_path)), "tiny", "", [], None, "camera",
                                                    5, "2", api_name="/denoise")
    assert np.array_equal(png(denoised), denoise(hub.load_model(registry.EXTRA["tiny"]), noisy, stride=2))
    assert "pixel-shuffle stride 2" in source
    (_, best), _, _, _, source = client.predict(handle_file(str(noisy_path)), "tiny", "", [], None, "camera", 5, "2",
                                                True, api_name="/denoise")
    assert np.array_equal(png(best), denoise(hub.load_model(registry.EXTRA["tiny"]), noisy, stride=2, ensemble=True))
    assert "×8 self-ensemble" in source
    with pytest.raises(AppError, match="7 is not in the list of choices"):
        client.predict(handle_file(str(noisy_path)), "tiny", "", [], None, "camera", 5, "7", api_name="/denoise")


def test_corrupt_with_camera_noise_and_send_it_to_denoise(client, clean_png):
    """Camera noise through the API at an ISO in stops (the default, 4 = ISO 1600, when none is given): two shots
    of one camera, noisier at more stops; "Send to Denoise" chooses the camera model for it."""
    from ui import denoise as denoise_tab

    a, b, psnr_a, _ = client.predict(handle_file(str(clean_png)), "camera", 6, 3, api_name="/corrupt")
    assert not np.array_equal(png(a), png(b))
    default = client.predict(handle_file(str(clean_png)), "camera", api_name="/corrupt")[2]
    assert psnr_a < default - 2  # stops 6 (ISO 6400) is noisier than the default stops 4
    sent = {"noisy": a, "clean": str(clean_png), "noise": "camera", "param": 6.0}
    outputs = denoise_tab.send_to_denoise(sent)
    expected = "camera" if "camera" in registry.model_names() else None
    assert outputs[2] == "camera" and outputs[6].value == expected


def test_heic_and_tiff_uploads_are_shown_as_png_of_the_same_pixels(tmp_path):
    """`ui.common.drawable`, the upload event of every image input: formats browsers do not draw become a PNG
    of the pixels `read_image` gives (what every later step reads); anything else is left as it is."""
    import gradio as gr

    from ui.common import drawable

    photo = skimage.data.astronaut()[:120, :160]
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # an iPhone's: Display P3
    Image.fromarray(photo).save(tmp_path / "phone.heic", format="HEIF", quality=90, icc_profile=profile)
    deep = (photo.astype(np.uint16) * 257)[..., :3]
    write_image(tmp_path / "scan.png", deep)
    cv2.imwrite(str(tmp_path / "scan.tif"), deep[..., ::-1])  # 16-bit RGB TIFF (Pillow writes only 8 bits)
    cv2.imwrite(str(tmp_path / "float.tif"), photo[..., ::-1].astype(np.float32) / 255)
    for name in ("phone.heic", "scan.tif"):
        shown = drawable(str(tmp_path / name))
        assert Path(shown).suffix == ".png" and Path(shown).stem == Path(name).stem
        assert Image.open(shown).format == "PNG"
        expected, got = read_image(tmp_path / name, dtype=None), read_image(shown, dtype=None)
        assert got.dtype == expected.dtype and np.array_equal(got, expected), name
        assert Image.open(shown).info.get("icc_profile") == (profile if name == "phone.heic" else None), name
    (tmp_path / "not.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(40))
    for name in ("scan.png", "float.tif", "not.heic"):
        assert drawable(str(tmp_path / name)) == gr.skip(), name
    # the button under every image input (a HEIC with no browser type): the same PNG, else the file itself, which
    # the tab's handlers then read or refuse in their own words
    from ui.common import picked_image

    assert Path(picked_image(str(tmp_path / "phone.heic"))).suffix == ".png" and picked_image(None) == gr.skip()
    for name in ("scan.png", "float.tif", "not.heic"):
        assert picked_image(str(tmp_path / name)) == str(tmp_path / name), name


@pytest.mark.skipif(not (DATA / "real" / "sidd1").is_dir(), reason="needs ../shared/data/real (real photos)")
def test_estimate_presets_the_stride_steins_estimate_reads_better_on_a_real_photo(client):
    """/estimate on real photos, with the bundled camera model: the smartphone block (SIDD, σ ≈ 38) is read at
    stride 2, where `camera` scores 26.08 dB against 25.63 at its own stride 1; the DSLR crop (nam25's 01, σ ≈ 3.6)
    at the model's own (null: stride 1, 39.54 against 38.48; benchmarks/results/stride.md)."""
    if "camera" not in hub.bundled_names():
        pytest.skip("no bundled camera model")
    real = DATA / "real"
    for photo, stride in ((real / "sidd1" / "noisy.png", 2), (real / "nam25" / "01_noise.png", None)):
        text, figures = client.predict(handle_file(str(photo)), api_name="/estimate")
        assert figures["kind"] == "camera" and figures["model"] == "camera", (photo, figures)
        assert figures["stride"] == stride, (photo, figures)
        assert ("at pixel-shuffle stride 2" in text) == (stride == 2), text
