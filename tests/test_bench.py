"""The benchmark runs for real on tiny inputs and writes the figures it promises (issue 6)."""
import json
import math

import numpy as np
import pytest
import skimage.data
from skimage.transform import resize

from benchmarks import bench
from n2n import hub
from n2n.io import write_image


@pytest.fixture(scope="module")
def two_photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench_photos")
    for name in ("astronaut", "coffee"):
        image = resize(getattr(skimage.data, name)(), (96, 128), anti_aliasing=True)
        write_image(folder / f"{name}.png", (image * 255).round().astype(np.uint8))
    return folder


def test_bench_writes_json_and_markdown_with_sane_figures(two_photos, tiny_checkpoint, tmp_path):
    models = [str(tiny_checkpoint)] + (["gaussian"] if "gaussian" in hub.bundled_names() else [])
    out = tmp_path / "results"
    report = bench.main(["--data", str(two_photos), "--limit", "2", "--models", ",".join(models),
                         "--baselines", "nlm,median", "--repeats", "1", "--rss-size", "160x96", "--forward-side", "128",
                         "--matmul-size", "512", "--out", str(out)])
    saved = json.loads((out / "latest.json").read_text())
    assert saved["images"] == report["images"] == 2
    for key in ("cpu", "cores", "torch", "load_average"):
        assert saved["machine"][key]
    assert len(saved["models"]) == len(models)
    for row in saved["models"]:
        assert row["noise"] == "gaussian" and row["param"] == 25.0  # the noise model's test setting
        for figures in [row] + [row["baselines"][b] for b in ("nlm", "median")]:
            assert math.isfinite(figures["psnr"]) and 0 < figures["ssim"] <= 1
            assert figures["seconds_per_megapixel"] > 0 and figures["images"] == 2
        assert math.isfinite(row["noisy_psnr"]) and row["baselines"]["nlm"]["psnr"] > row["noisy_psnr"]
        assert 3.2e5 < row["flops_per_pixel"] < 3.8e5  # the paper's U-Net: about 348 kFLOP per pixel
        assert row["achieved_gflops"] > 0
    if "gaussian" in hub.bundled_names():
        bundled = saved["models"][1]
        assert bundled["psnr"] > bundled["noisy_psnr"] + 1  # a trained model clearly helps
    eff = saved["efficiency"]
    from n2n.infer import native_bf16, resolve_precision

    emulated = resolve_precision("auto") == "bf16" and not native_bf16()  # N2N_PRECISION=bf16 on an AVX2 CPU:
    for key in ("all_threads", "one_thread_cpu_time"):  # its emulated matmul peak says nothing of the convolutions
        # under 4: a unit slip (GFLOP vs FLOP, image vs pixel) is off by 1000s, and a matmul peak timed while another
        # job held the core reads low (0.80 on a quiet machine: benchmarks/results/latest.json)
        assert eff[key]["matmul_peak_gflops"] > 0 and 0 < eff[key]["fraction_of_peak"] < (math.inf if emulated else 4)
    rss = saved["rss"]
    assert rss["width"] == 160 and rss["height"] == 96 and rss["seconds"] > 0
    assert 50 < rss["rss_after_model_load_mb"] <= rss["peak_rss_mb"] < 4000  # a fresh process, not pytest's
    table = (out / "latest.md").read_text()
    assert "| noisy input |" in table and "n2n U-Net" in table and "nlm" in table and "peak RSS" in table


def test_synthetic_photo_is_uint8_and_noisy():
    image = bench.synth_photo(70, 300)
    assert image.shape == (300, 70, 3) and image.dtype == np.uint8
    assert 10 < image.std() and image.min() < 60 and image.max() > 200


def test_the_benchmark_runs_as_its_own_module_and_the_cli_points_there(capsys):
    """benchmarks imports n2n, never the reverse: `python -m n2n bench` names `python -m benchmarks.bench`."""
    from n2n.cli import main

    with pytest.raises(SystemExit) as exit_:
        bench.main(["--help"])
    assert exit_.value.code == 0 and "--rss-size" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert "python -m benchmarks.bench" in str(exit_.value.code)  # a message: exit status 1


def test_train_speed_times_both_loops(tmp_path, monkeypatch):
    """benchmarks/train_speed.py runs both loops for real and writes what it measured."""
    from benchmarks import train_speed

    monkeypatch.setattr(train_speed, "TRAIN", tmp_path / "absent")  # its own synthetic photos: a few seconds
    train_speed.main(["--steps", "2", "--warmup", "1", "--batch", "2", "--crop", "64", "--repeats", "1",
                      "--out", str(tmp_path)])
    report = json.loads((tmp_path / "train_speed.json").read_text())
    assert report["data"] == "synthetic photos" and report["machine"]["torch"]
    for row in report["rows"]:
        assert row["bare_steps_per_s"] > 0 and row["n2n_steps_per_s"] > 0
        assert row["ratio"] == pytest.approx(row["n2n_steps_per_s"] / row["bare_steps_per_s"])
    assert "n2n / bare" in (tmp_path / "train_speed.md").read_text()


def test_onnx_benchmark_times_torch_and_onnxruntime_and_writes_what_it_measured(tmp_path):
    """benchmarks/onnx.py exports the bundled gaussian, times both backends for real, and its table is its JSON."""
    from benchmarks import onnx

    onnx.main(["--sizes", "32,64", "--threads", "1", "--runs", "2", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "onnx.json").read_text())
    assert [(r["size"], r["threads"]) for r in report["rows"]] == [(32, 1), (64, 1)] and report["onnxruntime"]
    table = (tmp_path / "onnx.md").read_text()
    for row in report["rows"]:
        seconds = row["seconds"]
        assert seconds["torch fp32"] > 0 and seconds["onnxruntime"] > 0
        assert row["onnx_speedup_over_torch_fp32"] == pytest.approx(seconds["torch fp32"] / seconds["onnxruntime"])
        assert f"| {row['size']} | 1 | {seconds['torch fp32']:.3f} (" in table
        assert f"| {row['onnx_speedup_over_torch_fp32']:.2f}× |" in table


def test_real_benchmark_reports_each_model_at_each_stride(two_photos, tiny_checkpoint, tmp_path):
    """benchmarks.real on a folder of (camera-noise) pairs named as the real sets are: every model, every stride."""
    from benchmarks import real
    from n2n.io import read_image, to_float
    from n2n.noise import corrupt

    folder = tmp_path / "real" / "phone"
    folder.mkdir(parents=True)
    for k, path in enumerate(sorted(two_photos.glob("*.png"))):
        clean = read_image(path)
        write_image(folder / f"{k:02d}_gt.png", (clean * 255).round().astype(np.uint8))
        noisy = corrupt(to_float(clean), "camera", 6, np.random.default_rng(k))
        write_image(folder / f"{k:02d}_noise.png", (noisy * 255).round().astype(np.uint8))
    out = tmp_path / "results"
    text = real.main(["--data", str(tmp_path / "real"), "--models", str(tiny_checkpoint), "--strides", "1,2",
                      "--out", str(out)])
    saved = json.loads((out / "real.json").read_text())["phone"]
    assert saved["images"] == 2 and 15 < saved["noisy"] < 40 and math.isfinite(saved["nlm"])
    figures = saved["models"][str(tiny_checkpoint)]
    assert set(figures) == {"1", "2"} and figures["1"]["psnr"] != figures["2"]["psnr"]
    assert "## `phone` (2 images)" in text and (out / "real.md").read_text().strip() == text.strip()
    real.main(["--data", str(tmp_path / "real"), "--models", "gaussian", "--strides", "1,2", "--out", str(out),
               "--update"])  # one model redone, the others kept
    updated = json.loads((out / "real.json").read_text())["phone"]
    assert set(updated["models"]) == {str(tiny_checkpoint), "gaussian"} and updated["nlm"] == saved["nlm"]
    assert updated["models"][str(tiny_checkpoint)] == figures


def test_the_mean_ceiling_is_what_a_shift_of_the_mean_costs(tmp_path):
    """A noisy photo 10 levels darker than its clean reference, noise aside: a denoiser keeping its mean scores at
    most 20·log10(255 / 10) dB; one whose mean matches has no ceiling."""
    from benchmarks import real

    rng = np.random.default_rng(0)
    clean = rng.integers(40, 200, (32, 32, 3)).astype(np.uint8)
    noise = rng.choice([-6, 6], (32, 32, 3))
    write_image(tmp_path / "gt.png", clean)
    write_image(tmp_path / "dark.png", (clean.astype(int) - 10 + noise).astype(np.uint8))
    write_image(tmp_path / "same.png", (clean.astype(int) + noise - noise.mean().round()).astype(np.uint8))
    assert real.mean_ceiling([(tmp_path / "dark.png", tmp_path / "gt.png")]) == pytest.approx(
        20 * math.log10(255 / 10), abs=0.3)  # the noise's own mean, ±0.3 levels, rounds away on 8 bits
    assert real.mean_ceiling([(tmp_path / "same.png", tmp_path / "gt.png")]) > 50


def test_grain_reads_correlation_where_there_is_some(two_photos, tmp_path):
    """benchmarks.grain on real-style pairs: white noise is uncorrelated 1 px apart, the same noise blurred is;
    the simulated camera rows are written for every stop."""
    import cv2

    from benchmarks import grain

    rng = np.random.default_rng(0)
    white = rng.normal(0, 1, (64, 64, 3))
    assert abs(grain.lag_correlation(white, 1)) < 0.05
    assert grain.lag_correlation(cv2.GaussianBlur(white, (0, 0), 1.0), 1) > 0.5
    folder = tmp_path / "real" / "phone"
    folder.mkdir(parents=True)
    clean = rng.integers(60, 190, (48, 48, 3)).astype(np.uint8)
    write_image(folder / "00_gt.png", clean)
    write_image(folder / "00_noise.png", np.clip(clean + rng.normal(0, 8, clean.shape), 0, 255).astype(np.uint8))
    text = grain.main(["--real", str(tmp_path / "real"), "--clean", str(two_photos), "--images", "2",
                       "--out", str(tmp_path / "out")])
    phone = next(line for line in text.splitlines() if line.startswith("| real: `phone` (1)"))
    assert float(phone.split("|")[2].split()[0]) < 0.1  # white: uncorrelated 1 px apart
    assert all(f"| camera, stops {s} (2) |" in text for s in grain.STOPS)
    assert (tmp_path / "out" / "grain.md").read_text() == text


def test_crops_benchmark_trains_each_schedule_for_the_same_time_and_scores_it(photo_folder, tiny_checkpoint,
                                                                              tmp_path):
    """benchmarks/crops.py: a probe sets each schedule's steps, each run ends its ramp-down and is scored with
    the start, and the table is its JSON."""
    from benchmarks import crops

    crops.main(["--minutes", "0.02", "--schedules", "32x2,64x1", "--init", str(tiny_checkpoint),
                "--probe", "2", "--checks", "0.5", "--data", str(photo_folder), "--quick", str(photo_folder),
                "--quick-images", "2", "--test", str(photo_folder), "--test-images", "3",
                "--work", str(tmp_path / "runs"), "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "crops.json").read_text())
    assert [r["schedule"] for r in saved["rows"]] == ["32x2", "64x1"] and saved["precision"] in ("fp32", "bf16")
    for row in saved["rows"]:
        config = hub.read_config(tmp_path / "runs" / row["schedule"])
        assert config["steps"] == row["steps"] >= 1 and config["train_config"]["crop"] == row["crop"]
        assert row["pixels"] == row["steps"] * row["batch"] * row["crop"] ** 2
        assert math.isfinite(row["quick_psnr"]) and math.isfinite(row["test_psnr"])
        assert row["checks"][-1] == {"step": row["steps"], "quick_psnr": row["quick_psnr"]}
    assert saved["start"]["quick_psnr"] > 0 and saved["verdict"] and saved["caveat"]
    table = (tmp_path / "crops.md").read_text()
    assert "| 64² × 1 |" in table and "avx512_bf16:" in table and "amx_bf16:" in table
    crops.main(["--pixels", "0.01", "--schedules", "32x2", "--init", str(tiny_checkpoint), "--probe", "2",
                "--data", str(photo_folder), "--quick", str(photo_folder), "--quick-images", "1", "--test",
                str(photo_folder), "--test-images", "1", "--work", str(tmp_path / "pixels"), "--out", str(tmp_path),
                "--name", "pixels"])  # a budget of pixels instead of minutes, beside the first report
    assert json.loads((tmp_path / "pixels.json").read_text())["rows"][0]["steps"] == round(0.01e6 / (2 * 32 * 32))
    assert "equal pixels" in (tmp_path / "pixels.md").read_text() and (tmp_path / "crops.json").is_file()
