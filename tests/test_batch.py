"""Many photos at once (issue 26, item 4): /denoise_batch on the real app, driven by gradio_client:
images and zips of images in, a zip of PNGs back, each equal to what n2n.denoise makes of its image;
a refused file is named in its row and the others go on; the batch's limits are refused in one sentence."""
from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from helpers import photo, refusal
from n2n import load_model
from n2n.infer import denoise
from n2n.io import from_float, read_image, write_image
from n2n.noise import corrupt

from ui import batch


def noisy(size: int, seed: int) -> np.ndarray:
    """A noisy photo, uint8 HxWx3 (size × size+32: not square)."""
    clean = np.concatenate([photo(size), photo(size)[:, :32]], axis=1)
    return from_float(np.clip(corrupt(clean, "gaussian", 25, np.random.default_rng(seed)), 0, 1), np.uint8)


def test_images_and_zips_come_back_denoised_in_one_zip(client, tmp_path, tiny_checkpoint):
    images = {f"a{i}.png": noisy(64, i) for i in range(2)} | {f"b{i}.png": noisy(32, 10 + i) for i in range(2)}
    for name in ("a0.png", "a1.png"):
        write_image(tmp_path / name, images[name])
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(write_image(tmp_path / "b0.png", images["b0.png"]), "b0.png")
        z.write(write_image(tmp_path / "b1.png", images["b1.png"]), "inner/b1.png")
        z.writestr("notes.txt", "not an image: skipped")
        z.writestr("__MACOSX/._b0.png", b"resource fork: skipped")
        z.writestr("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG's signature and nothing else
        heic = io.BytesIO()
        Image.fromarray(noisy(48, 20)).save(heic, format="HEIF", quality=90)  # a phone's photo
        z.writestr("IMG_0002.HEIC", heic.getvalue())
    images["IMG_0002.png"] = read_image(heic.getvalue(), dtype=None)
    out, gallery, table, summary = client.predict(
        [handle_file(tmp_path / "a0.png"), handle_file(tmp_path / "a1.png"), handle_file(archive)],
        "tiny", "", "auto", False, api_name="/denoise_batch")
    rows = {r[0]: r[1] for r in table["data"]}
    assert set(rows) == {"a0.png", "a1.png", "more.zip/b0.png", "more.zip/inner/b1.png", "more.zip/broken.png",
                         "more.zip/IMG_0002.HEIC"}
    assert rows["more.zip/broken.png"].startswith("refused: more.zip/broken.png: ")
    assert "**5 of 6** images" in summary and "1 refused" in summary
    assert len(gallery) == 5
    model = load_model(str(tiny_checkpoint)).eval()
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == ["IMG_0002_denoised.png", "a0_denoised.png", "a1_denoised.png",
                                        "b0_denoised.png", "b1_denoised.png"]
        for name, image in images.items():
            got = read_image(z.read(name.replace(".png", "_denoised.png")), dtype=None)
            assert got.dtype == np.uint8 and got.shape == image.shape
            assert np.abs(got.astype(int) - denoise(model, image).astype(int)).max() <= 1, name


def test_a_batch_beyond_its_limits_or_without_images_is_refused_in_one_sentence(client, tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"this is not a zip")
    assert "fake.zip is not a zip file" in refusal(lambda: client.predict(
        [handle_file(fake)], "tiny", "", "auto", False, api_name="/denoise_batch"))
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        image = write_image(tmp_path / "one.png", noisy(32, 0))
        for i in range(batch.MAX_BATCH_FILES + 1):
            z.write(image, f"{i}.png")
    assert f"at most {batch.MAX_BATCH_FILES} per batch" in refusal(lambda: client.predict(
        [handle_file(many)], "tiny", "", "auto", False, api_name="/denoise_batch"))
    text = tmp_path / "empty.zip"
    with zipfile.ZipFile(text, "w") as z:
        z.writestr("readme.txt", "no images here")
    assert "No images in the upload" in refusal(lambda: client.predict(
        [handle_file(text)], "tiny", "", "auto", False, api_name="/denoise_batch"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n")
    message = refusal(lambda: client.predict([handle_file(broken)], "tiny", "", "auto", False,
                                             api_name="/denoise_batch"))
    assert message.startswith("Every file was refused: broken.png: ") and message.count("broken.png") == 1, message


def test_a_zip_member_larger_than_one_upload_is_refused_by_name(tmp_path, monkeypatch):
    """Read from the zip at most one upload's bytes, whatever size the zip declares."""
    monkeypatch.setattr(batch, "MAX_MEMBER_BYTES", 2**20 // 2)
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(write_image(tmp_path / "big.png", noisy(512, 3)), "big.png")  # about 0.8 MB
    [(name, source)] = batch.entries([str(archive)])
    with pytest.raises(batch.UserError) as err:
        batch.read_entry(name, source)
    assert re.fullmatch(r"big.zip/big.png: \d\.\d MB, over the 0.5 MB of one upload\.", err.value.message)


def test_images_past_the_batch_pixel_budget_are_left_out_by_name(client, tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "MAX_BATCH_PIXELS", 64 * 96)  # the first image exactly
    paths = [write_image(tmp_path / f"{name}.png", noisy(64, i)) for i, name in enumerate(("first", "second"))]
    out, _, table, summary = client.predict([handle_file(p) for p in paths], "tiny", "", "auto", False,
                                            api_name="/denoise_batch")
    rows = {r[0]: r[1] for r in table["data"]}
    assert rows["first.png"].startswith("first_denoised.png")
    assert rows["second.png"].startswith("left out: the batch passed 0.006144 megapixels")
    with zipfile.ZipFile(out) as z:
        assert z.namelist() == ["first_denoised.png"]
