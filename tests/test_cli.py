"""`python -m n2n` as a user runs it: in a subprocess, on real files."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from n2n.baselines import available, get_baseline, median, nlm
from n2n.io import read_image, write_image
from n2n.metrics import psnr
from n2n.noise import corrupt
from helpers import photo

ROOT = Path(__file__).resolve().parents[1]


def n2n(*args, ok=True):
    result = subprocess.run([sys.executable, "-m", "n2n", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def test_corrupt_then_denoise_then_eval(tmp_path, photo_folder, tiny_checkpoint):
    clean = photo_folder / "astronaut.png"
    noisy = tmp_path / "noisy file.png"
    n2n("corrupt", clean, "-o", noisy, "--noise", "gaussian", "--param", 25, "--seed", 3)
    a = read_image(noisy, dtype=None)
    assert a.dtype == np.uint8 and a.shape == read_image(clean).shape
    assert 18 < psnr(read_image(clean), a) < 24  # σ=25 gives about 20 dB
    n2n("corrupt", clean, "-o", tmp_path / "again.png", "--noise", "gaussian", "--param", 25, "--seed", 3)
    assert np.array_equal(a, read_image(tmp_path / "again.png", dtype=None))  # a seed reproduces

    out = tmp_path / "-dash ünïcode.png"
    n2n("denoise", noisy, "-o", out, "--model", tiny_checkpoint)
    assert read_image(out, dtype=None).shape == a.shape

    outdir = tmp_path / "many"
    n2n("denoise", noisy, clean, "-o", outdir, "--model", tiny_checkpoint, "--tile", 64)
    assert sorted(p.name for p in outdir.iterdir()) == ["astronaut.png", "noisy file.png"]

    result = n2n("eval", "--model", tiny_checkpoint, "--data", photo_folder, "--noise", "gaussian", "--param", 25,
                 "--baselines", "nlm,median", "--json", "-")
    report = json.loads(result.stdout)
    for key in ("images", "psnr", "ssim", "noisy_psnr", "seconds_per_megapixel", "per_image", "nlm", "median"):
        assert key in report
    assert report["images"] == 4 and len(report["per_image"]) == 4
    assert report["nlm"]["psnr"] > report["noisy_psnr"] + 3  # a tuned baseline clearly helps
    assert report["nlm"]["seconds_per_megapixel"] > 0


def test_denoise_refuses_bad_files_with_one_line(tmp_path, tiny_checkpoint):
    bad = tmp_path / "page.png"
    bad.write_text("<html><body>not an image</body></html>")
    result = n2n("denoise", bad, "-o", tmp_path / "out.png", "--model", tiny_checkpoint, ok=False)
    assert result.returncode != 0
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.png").exists()
    result = n2n("denoise", bad, "-o", tmp_path / "out.png", "--model", "no-such-model", ok=False)
    assert result.returncode == 2 and "no model" in result.stderr and "Traceback" not in result.stderr


def test_denoise_keeps_16_bit_and_alpha(tmp_path, tiny_checkpoint):
    image = (photo(40) * 65535).astype(np.uint16)
    rgba = np.concatenate([image, np.full((40, 40, 1), 1234, np.uint16)], axis=2)
    write_image(tmp_path / "deep.png", rgba)
    n2n("denoise", tmp_path / "deep.png", "-o", tmp_path / "out.png", "--model", tiny_checkpoint)
    out = read_image(tmp_path / "out.png", dtype=None)
    assert out.dtype == np.uint16 and out.shape == (40, 40, 4) and np.all(out[..., 3] == 1234)


def test_corrupt_passes_alpha_through(tmp_path):
    """The colour is corrupted, the alpha kept as it was (8-bit out, as `corrupt` writes)."""
    image = (photo(40) * 255).astype(np.uint8)
    alpha = np.arange(40 * 40, dtype=np.uint8).reshape(40, 40, 1)
    write_image(tmp_path / "rgba.png", np.concatenate([image, alpha], axis=2))
    n2n("corrupt", tmp_path / "rgba.png", "-o", tmp_path / "noisy.png", "--noise", "gaussian", "--param", 25)
    out = read_image(tmp_path / "noisy.png", dtype=None)
    assert out.dtype == np.uint8 and out.shape == (40, 40, 4) and np.array_equal(out[..., 3:], alpha)
    assert 18 < psnr(image, out[..., :3]) < 24


def test_a_phones_colour_profile_comes_back_on_the_results(tmp_path, tiny_checkpoint):
    """A photo tagged with an ICC profile (phones: Display P3): corrupt's and denoise's PNGs carry the same one,
    so a viewer shows them in the photo's colours; an untagged photo gives untagged results."""
    from PIL import Image, ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray((photo(48) * 255).astype(np.uint8)).save(tmp_path / "IMG_0003.jpg", quality=92,
                                                               icc_profile=profile)
    Image.fromarray((photo(48) * 255).astype(np.uint8)).save(tmp_path / "plain.jpg", quality=92)
    n2n("corrupt", tmp_path / "IMG_0003.jpg", "-o", tmp_path / "noisy.png", "--noise", "gaussian", "--param", 10)
    n2n("denoise", tmp_path / "IMG_0003.jpg", tmp_path / "plain.jpg", "-o", tmp_path / "out", "--model",
        tiny_checkpoint)
    for name in ("noisy.png", "out/IMG_0003.png"):
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG" and im.info.get("icc_profile") == profile, name
    with Image.open(tmp_path / "out" / "plain.png") as im:
        assert "icc_profile" not in im.info


def test_denoise_inputs_with_the_same_name_do_not_overwrite_each_other(tmp_path, tiny_checkpoint):
    images = [(photo(32) * 255).astype(np.uint8), (photo(32)[::-1] * 255).astype(np.uint8)]
    inputs = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"]
    for path, image in zip(inputs, images):
        path.parent.mkdir()
        write_image(path, image)
    n2n("denoise", *inputs, "-o", tmp_path / "out", "--model", tiny_checkpoint)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x-2.png", "x.png"]
    single = tmp_path / "single.png"
    for path, name in zip(inputs, ["x.png", "x-2.png"]):  # each output is its own input's
        n2n("denoise", path, "-o", single, "--model", tiny_checkpoint)
        assert np.array_equal(read_image(single, dtype=None), read_image(tmp_path / "out" / name, dtype=None))


@pytest.mark.parametrize("name", available())
def test_baselines_help(name):
    clean = photo(96)
    noise, param = ("impulse", 0.3) if name == "median" else ("gaussian", 25.0)
    noisy = np.clip(corrupt(clean, noise, param, np.random.default_rng(0)), 0, 1)
    out = get_baseline(name)(noisy, noise, param)
    assert out.shape == clean.shape and out.dtype == np.float32
    assert psnr(clean, out) > psnr(clean, noisy) + 1.5


def test_unknown_or_missing_baseline():
    with pytest.raises(ValueError, match="unknown baseline"):
        get_baseline("wiener")
    if "bm3d" not in available():
        with pytest.raises(ValueError, match="pip install bm3d"):
            get_baseline("bm3d")


def test_gray_baselines():
    clean = photo(64, channels=1)
    noisy = np.clip(corrupt(clean, "gaussian", 25.0, np.random.default_rng(0)), 0, 1)
    assert nlm(noisy, "gaussian", 25.0).shape == clean.shape
    assert median(noisy, "gaussian", 25.0).shape == clean.shape


def test_refusals_read_as_a_command_line_would_say_them(tmp_path, tiny_checkpoint):
    """A refused file gives its error and no progress bar; the size limit's advice names --max-pixels."""
    bad = tmp_path / "page.png"
    bad.write_text("<html><body>not an image</body></html>")
    result = n2n("denoise", bad, "-o", tmp_path / "out.png", "--model", tiny_checkpoint, ok=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and lines[-1].startswith(f"error: {bad}: not an image file"), result.stderr
    assert "1/1" not in result.stderr and "denoise:" not in result.stderr  # tqdm's bar reads "denoise: 100%|…| 1/1"

    big = tmp_path / "big.png"  # 64 × 64 = 4096 pixels
    write_image(big, (photo(64) * 255).astype(np.uint8))
    commands = {"corrupt": ["corrupt", big, "-o", tmp_path / "noisy.png", "--noise", "gaussian", "--param", 25],
                "denoise": ["denoise", big, "-o", tmp_path / "clean.png", "--model", tiny_checkpoint],
                "eval": ["eval", "--model", tiny_checkpoint, "--data", tmp_path, "--limit", 2, "--noise", "gaussian",
                         "--param", 25]}
    bad.unlink()
    for name, command in commands.items():
        result = n2n(*command, "--max-pixels", 4000, ok=False)
        error = result.stderr.strip().splitlines()[-1]
        assert result.returncode != 0 and error.startswith("error: "), (name, result.stderr)
        assert "over the limit of 4000 pixels" in error and "rerun with a larger --max-pixels" in error, name
        assert "max_pixels" not in result.stderr and "read_image" not in result.stderr, name
        n2n(*command, "--max-pixels", 4096)  # the flag admits it

    small = tmp_path / "small.png"
    write_image(small, (photo(32) * 255).astype(np.uint8))
    result = n2n("denoise", big, small, "-o", tmp_path / "out", "--model", tiny_checkpoint, "--max-pixels", 4000,
                 ok=False)
    assert result.returncode == 1 and [p.name for p in (tmp_path / "out").iterdir()] == ["small.png"]
    summary = f"1 of 2 images refused (above); 1 written to {tmp_path / 'out'}"
    assert result.stderr.strip().splitlines()[-1] == summary
    assert "denoise: 100%" in result.stderr and "2/2" in result.stderr  # several inputs: the bar ran to the end
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {big}: image is 64x64"), result.stderr


def test_eval_on_real_pairs_matches_them_by_name(tmp_path, photo_folder):
    """`eval --pairs`: noisy/clean photos matched by name; the unmatched named in one line; --stride used; the
    baselines run at the noise level estimated blind."""
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for k, name in enumerate(["astronaut", "coffee"]):
        clean = read_image(photo_folder / f"{name}.png")
        write_image(pairs / f"{k:02d}_gt.png", clean)
        noisy = corrupt(clean, "camera", 6, np.random.default_rng(k))  # read_image: float32 in [0, 1]
        write_image(pairs / f"{k:02d}_noise.png", (np.clip(noisy, 0, 1) * 255).round().astype(np.uint8))
    report = {}
    for stride in (1, 2):
        out = n2n("eval", "--model", "gaussian", "--pairs", pairs, "--baselines", "nlm", "--stride", stride,
                  "--json", "-")
        report[stride] = json.loads(out.stdout)
        assert report[stride]["images"] == 2 and report[stride]["stride"] == stride
        assert [r["image"] for r in report[stride]["per_image"]] == ["00_noise.png", "01_noise.png"]
        assert report[stride]["noise"] == "real" and "nlm" in report[stride]
        # at the σ read blind (camera noise: at stride 2), non-local means takes noise out (+0.50 dB; at the
        # stride-1 PCA σ, about a third of the RMS, +0.00)
        assert report[stride]["nlm"]["psnr"] > report[stride]["noisy_psnr"] + 0.25, report[stride]
    assert report[1]["noisy_psnr"] == report[2]["noisy_psnr"] and report[1]["psnr"] != report[2]["psnr"]
    write_image(pairs / "stray.png", read_image(photo_folder / "rocket.png"))
    failed = n2n("eval", "--model", "gaussian", "--pairs", pairs, ok=False)
    assert failed.returncode == 2 and "no noisy/clean partner for stray.png" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    (pairs / "stray.png").rename(pairs / "stray_a.png")
    write_image(pairs / "stray_b.png", read_image(photo_folder / "rocket.png"))
    custom = n2n("eval", "--model", "gaussian", "--pairs", pairs, "--pair", "_noise,_gt", "--pair", "_a,_b",
                 "--json", "-")
    assert json.loads(custom.stdout)["images"] == 3
    both = n2n("eval", "--model", "gaussian", "--pairs", pairs, "--data", photo_folder, ok=False)
    assert both.returncode != 0 and "--pairs DIR" in both.stderr


def test_denoise_and_eval_with_the_self_ensemble(tmp_path, photo_folder, tiny_checkpoint):
    from n2n import hub
    from n2n.infer import denoise

    noisy = tmp_path / "noisy.png"
    n2n("corrupt", photo_folder / "coffee.png", "-o", noisy, "--noise", "gaussian", "--param", 25)
    n2n("denoise", noisy, "-o", tmp_path / "best.png", "--model", tiny_checkpoint, "--ensemble")
    expected = denoise(hub.load_dir(tiny_checkpoint).model, read_image(noisy, dtype=None), ensemble=True)
    assert np.array_equal(read_image(tmp_path / "best.png", dtype=None), expected)
    report = json.loads(n2n("eval", "--model", tiny_checkpoint, "--data", photo_folder, "--noise", "gaussian",
                            "--param", 25, "--limit", 1, "--ensemble", "--json", "-").stdout)
    assert report["ensemble"] == 8 and report["images"] == 1


def test_help_names_the_command_as_it_was_called():
    assert n2n("--help").stdout.startswith("usage: python -m n2n")
    script = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = '/usr/local/bin/n2n'; "
                             "from n2n.cli import main; main(['--help'])"], cwd=ROOT, capture_output=True, text=True)
    assert script.stdout.startswith("usage: n2n "), script.stdout[:80]


def test_the_installed_wheel_denoises_offline_with_its_bundled_models(tmp_path):
    """pip install of the wheel, then from another folder, with no repository on the path: the CLI denoises with
    a bundled model (the wheel carries checkpoints/ as n2n/bundled) and its --help names the `n2n` script."""
    import os

    wheels, site = tmp_path / "wheels", tmp_path / "site"
    leftovers = [ROOT / "build", ROOT / "n2n.egg-info"]  # setuptools builds in the tree: a stale build/ would ship
    before = {p: p.exists() for p in leftovers}
    try:
        build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w",
                                str(wheels)], capture_output=True, text=True, timeout=600)
    finally:
        for path, existed in before.items():
            if not existed:
                shutil.rmtree(path, ignore_errors=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("n2n-*.whl"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    write_image(work / "noisy.png", (np.clip(corrupt(photo(64), "gaussian", 25, np.random.default_rng(0)), 0, 1)
                                     * 255).round().astype(np.uint8))
    env = os.environ | {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "N2N_HUB_REPO": ""}
    run = subprocess.run([sys.executable, "-m", "n2n", "denoise", "noisy.png", "-o", "clean.png", "--model",
                          "gaussian"], cwd=work, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert read_image(work / "clean.png").shape == (64, 64, 3)
    where = subprocess.run([sys.executable, "-c", "import n2n.hub as h; print(h.CHECKPOINTS)"], cwd=work,
                           capture_output=True, text=True, env=env)
    assert where.stdout.strip() == str(site / "n2n" / "bundled")
    script = subprocess.run([str(site / "bin" / "n2n"), "--help"], cwd=work, capture_output=True, text=True, env=env)
    assert script.stdout.startswith("usage: n2n "), script.stdout[:200] + script.stderr[-500:]
