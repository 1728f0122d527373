"""n2n: Noise2Noise Studio, the Gradio app (Corrupt, Denoise, Fine-tune, About).

Wiring only: the `n2n` package corrupts, denoises, trains and loads the models; this
file holds the layout, the short handlers that call it, and the helpers they share.
Importing it builds the interface and downloads nothing; models load on first use
and stay cached.

    python app.py [--share] [--host 0.0.0.0] [--port 7860]

Endpoints for gradio_client: /corrupt, /denoise, /finetune (their first two inputs
are the image and the noise or model name; the rest have defaults), /stop, /push.
A model fine-tuned here belongs to the session that made it; a push uses the visitor's own
token or Hugging Face login, never the server's (SECURITY.md).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import torch

from n2n import baselines, finetune as ft, hub
from n2n.infer import denoise as n2n_denoise, resolve_precision
from n2n.io import ImageError, centre_crop, from_float, read_image, split_alpha, to_float, write_image
from n2n.metrics import psnr, ssim
from n2n.noise import NOISE_MODELS, corrupt as n2n_corrupt, get_noise
from n2n.train import TrainConfig, validation_set

try:  # ZeroGPU Spaces: borrow a GPU for the duration of a call
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn=None, **_):
        """No-op stand-in for `spaces.GPU` (usable bare or with arguments)."""
        return fn if fn is not None else (lambda f: f)

TITLE = "n2n: Noise2Noise Studio"
MAX_STEPS = 2000  # fine-tuning budget per run
MAX_PIXELS = 16_000_000  # per uploaded image
MAX_UPLOADS = 64  # images per fine-tuning run
MAX_TRAIN_PIXELS = 64_000_000  # all of a run's images together (they are kept in memory)
MAX_FILE_SIZE = "20mb"
WORK = Path(tempfile.gettempdir()) / "n2n-app"  # the system temp dir: Gradio may serve files from it
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?(:[\w./-]+)?$")
TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # a Hub access token: printable ASCII, no spaces
BASELINE_LABELS = {"nlm": "non-local means (OpenCV)", "median": "median filter", "bm3d": "BM3D"}
KINDS = [("clean images → synthetic noisy pairs", "synthetic"),
         ("pairs of noisy shots of the same scenes (two uploads)", "pairs"),
         ("single noisy images (Neighbor2Neighbor)", "single"),
         ("one noisy image, zero-shot (no training data)", "zero-shot")]
LOSSES = [("auto: the one that fits the noise", "auto"), ("L2 (mean)", "l2"), ("L1 (median)", "l1"),
          ("annealed L0 (mode)", "l0"), ("L2 on surviving pixels", "masked_l2")]
# The parameter an API call sends when it leaves the slider out: the Gaussian default. For another
# noise whose range excludes it, it stands for "not given" and that noise's own default is used.
API_DEFAULT_PARAM = NOISE_MODELS["gaussian"].default
API_DEFAULT_RANGE = NOISE_MODELS["gaussian"].train_range
EXAMPLES = ("astronaut", "chelsea", "coffee", "rocket")

_EXTRA: dict[str, Path] = {}  # checkpoints shown to everyone beside the bundled ones (build_demo, N2N_EXTRA_MODELS)
_FINETUNED: dict[str, Path] = {}  # checkpoints fine-tuned here, by name; listed only to the session that made them
_OWNERS: dict[str, str | None] = {}  # fine-tuned model name -> session hash of the visitor who made it
_CACHE: OrderedDict[str, tuple[hub.LoadedModel, float]] = OrderedDict()  # ref -> (model, time.monotonic() loaded)
_FALLBACK_S = 300.0  # a bundled copy standing in for an unreachable Hub copy is kept this long, then the Hub is retried
_CACHE_LOCK = threading.Lock()
_STOPS: dict[str, threading.Event] = {}  # session -> "stop the fine-tuning run" flag


# --------------------------------------------------------------------------- helpers: files and images


class UserError(gr.Error):
    """Bad input, said in plain words to the user; no traceback in the server log."""

    def __init__(self, message: str):
        super().__init__(message, print_exception=False)


def image_input(**kwargs) -> gr.Image:
    """A gr.Image input (type="filepath") whose upload reaches the handler unopened, for `read` to check.

    gr.Image's own preprocessing opens the file with Pillow first: an empty file, a page or a PDF
    named .png, or a decompression bomb failed there, before the handler, with no word to the user.
    (Patched on the instance: Gradio writes a .pyi stub beside any file that subclasses a component.)
    """
    component = gr.Image(**kwargs)
    default = component.preprocess

    def preprocess(payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)  # Gradio has checked it is a file uploaded to this server
        return default(payload)

    component.preprocess = preprocess
    return component


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def workdir(kind: str = "calls", max_age_s: float = 3 * 3600) -> Path:
    """A fresh folder for one call's files under WORK/kind; folders older than max_age_s are removed."""
    root = WORK / kind
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.iterdir():
        try:
            if now - old.stat().st_mtime > max_age_s:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(dir=root))


def read(path, what: str = "image") -> np.ndarray:
    """The image at `path` (HxWxC at its own bit depth) or a gr.Error in plain words."""
    if not path:
        raise UserError(f"No {what}: upload one first (or pick an example).")
    try:
        return read_image(path, dtype=None, max_pixels=MAX_PIXELS)
    except ImageError as e:
        raise UserError(e.user_message.replace(str(path), Path(path).name)) from None


def save_png(path: Path, colour: np.ndarray, like: np.ndarray, alpha: np.ndarray | None = None) -> str:
    """Write `colour` (float or int) as a PNG at the bit depth of `like`, alpha appended; return the path."""
    out = colour if colour.dtype == like.dtype else from_float(to_float(colour), like.dtype)
    if alpha is not None:
        out = np.concatenate([out, alpha.astype(out.dtype)], axis=2)
    return str(write_image(path, out))


def safe_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "image"


def example_images() -> list[str]:
    """scikit-image's sample photos as PNG files, written on first use."""
    import skimage.data

    folder = WORK / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in EXAMPLES:
        path = folder / f"{name}.png"
        if not path.is_file():
            write_image(path, getattr(skimage.data, name)())
        paths.append(str(path))
    return paths


# --------------------------------------------------------------------------- helpers: noise settings


def noise_model(name: str):
    try:
        return get_noise(name)
    except ValueError as e:
        raise UserError(str(e)) from None


def slider_step(model) -> float:
    return 1.0 if model.limits[1] > 2 else 0.01


def param_slider(noise: str, value: float | None = None, **kwargs) -> gr.Slider:
    """The parameter slider for `noise`: its symbol, units and limits, at `value` (default: the test setting)."""
    m = get_noise(noise)
    return gr.Slider(minimum=m.limits[0], maximum=m.limits[1], step=slider_step(m),
                     value=m.default if value is None else value, label=f"{m.param}: {m.units}", **kwargs)


def range_sliders(noise: str) -> tuple[gr.Slider, gr.Slider]:
    """The two sliders of the training range of `noise`, at its default range."""
    m = get_noise(noise)
    common = dict(minimum=m.limits[0], maximum=m.limits[1], step=slider_step(m))
    return (gr.Slider(value=m.train_range[0], label=f"training {m.param} from", **common),
            gr.Slider(value=m.train_range[1], label=f"training {m.param} to", **common))


def check_param(model, param) -> float:
    lo, hi = model.limits
    if param is None or (param == API_DEFAULT_PARAM and model.name != "gaussian" and not lo <= param <= hi):
        return model.default
    if not lo <= param <= hi:
        raise UserError(f"{model.name} {model.param} = {param} is outside [{lo}, {hi}] ({model.units}).")
    return float(param)


def check_range(model, low, high) -> tuple[float, float]:
    if (low, high) == tuple(API_DEFAULT_RANGE) and model.name != "gaussian":
        return model.train_range
    lo, hi = model.limits
    if not lo <= low <= high <= hi:
        raise UserError(f"the training range of {model.param} must satisfy {lo} ≤ from ≤ to ≤ {hi}; "
                       f"got {low} to {high}.")
    return float(low), float(high)


# --------------------------------------------------------------------------- helpers: models


def register_extra(models) -> None:
    """Add checkpoint folders to the model list: a dict name -> folder, or folders (named after themselves)."""
    items = models.items() if isinstance(models, dict) else ((Path(p).name, p) for p in models)
    for name, folder in items:
        folder = Path(folder)
        hub.read_config(folder)  # fails loudly on a folder that is not a checkpoint
        name = str(name)
        while name in hub.bundled_names() or (name in _EXTRA and _EXTRA[name] != folder):
            name += "+"
        _EXTRA[name] = folder


def extra_from_env() -> dict[str, str]:
    """N2N_EXTRA_MODELS: entries `name=folder` or `folder`, separated by os.pathsep."""
    found = {}
    for entry in filter(None, os.environ.get("N2N_EXTRA_MODELS", "").split(os.pathsep)):
        name, _, folder = entry.partition("=") if "=" in entry else (Path(entry).name, "", entry)
        found[name] = folder
    return found


def model_names(session: list[str] | None = None) -> list[str]:
    """Bundled models, extra checkpoints, then this session's fine-tuned ones."""
    names = hub.bundled_names() + [n for n in _EXTRA if n not in hub.bundled_names()]
    return names + [n for n in (session or []) if n in _FINETUNED and n not in names]


def compare_choices(session: list[str] | None = None) -> list[tuple[str, str]]:
    return [(f"n2n · {n}", n) for n in model_names(session)] + [(BASELINE_LABELS[b], b) for b in baselines.available()]


def is_hub_ref(ref: str) -> bool:
    """owner/name[@revision][:subfolder], with no '.' or '..' part: a revision reaches the Hub cache's paths."""
    return bool(HUB_ID.match(ref)) and not any(part in (".", "..") for part in re.split(r"[/@:]", ref))


def _load_uncached(ref: str) -> hub.LoadedModel:
    if ref in hub.bundled_names() and not Path(ref).exists():  # (a folder of that name here would shadow it)
        return hub.resolve(ref)  # from the Hub first when N2N_HUB_REPO is set, else (or failing that) bundled
    if ref in _EXTRA or ref in _FINETUNED:
        return hub.load_dir(_EXTRA.get(ref) or _FINETUNED[ref], source=f"local:{ref}")
    if is_hub_ref(ref) and not Path(ref).exists():
        return hub.resolve(ref)
    raise unknown_model(ref)


def unknown_model(ref: str) -> UserError:
    return UserError(f"Unknown model {ref!r}: choose one of {', '.join(model_names()) or '(none installed)'}, "
                     f"or give a Hugging Face Hub repo id such as owner/name.")


def session_key(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


def check_session(ref: str, request: gr.Request | None) -> None:
    """Refuse a model fine-tuned in another visitor's session, as if it did not exist (names are not secrets)."""
    if ref in _FINETUNED and _OWNERS.get(ref) != session_key(request):
        raise unknown_model(ref)


def load(ref: str) -> hub.LoadedModel:
    """The model for a listed name or a Hub repo id, loaded once and cached (the last 8)."""
    ref = (ref or "").strip()
    if not ref:
        raise UserError("No model chosen: pick one from the list or enter a Hub repo id.")
    with _CACHE_LOCK:
        if ref in _CACHE and _CACHE[ref][0].fallback and time.monotonic() - _CACHE[ref][1] > _FALLBACK_S:
            del _CACHE[ref]  # the Hub may be back
        if ref not in _CACHE:
            try:
                _CACHE[ref] = (_load_uncached(ref), time.monotonic())
            except UserError:
                raise
            except hub.CheckpointError as e:
                raise UserError(f"Cannot load {ref!r}: {e}") from None
            except ImportError:
                raise UserError("Loading models from the Hub is not available in this installation.") from None
            except Exception as e:  # network, authentication, missing files on the Hub
                raise UserError(f"Cannot load {ref!r} from the Hub: {str(e).splitlines()[0][:300]}") from None
            while len(_CACHE) > 8:
                _CACHE.popitem(last=False)
        _CACHE.move_to_end(ref)
        return _CACHE[ref][0]


def describe_source(ref: str, loaded: hub.LoadedModel) -> str:
    src, config = loaded.source, loaded.config
    note = src[src.index(" (") + 2:-1] if src.endswith(")") and " (" in src else ""
    if src.startswith("bundled:"):
        where = "the bundled checkpoint in checkpoints/" + (f" ({note})" if note else "")
    elif src.startswith("hub:"):
        where = f"the Hugging Face Hub ({src[4:].split(' (')[0]}{', ' + note if note else ''})"
    elif ref in _FINETUNED:
        where = "a model fine-tuned in this session"
    else:
        where = "a local checkpoint"
    targets = "clean targets (Noise2Clean)" if config.get("clean_targets") else "noisy targets (Noise2Noise)"
    device = next(loaded.model.parameters()).device
    precision = resolve_precision("auto", device)
    hardware = "GPU" if device.type == "cuda" else "CPU" + (" with native bf16" if precision == "bf16" else "")
    return (f"Model **{ref}** served from {where}: trained for {config.get('noise', '?')} noise with "
            f"{targets}, {config.get('steps', '?')} steps. Ran in {precision} on the {hardware}.")


def run_method(method: str, noisy: np.ndarray, noise: str, param: float, progress) -> np.ndarray:
    """Denoise `noisy` (HxWxC, own dtype) with a baseline or a model; same shape and dtype out."""
    if method in baselines.BASELINES:
        colour, alpha = split_alpha(noisy)
        try:
            out = baselines.get_baseline(method)(to_float(colour), noise, param)
        except ValueError as e:
            raise UserError(str(e)) from None
        out = from_float(out, colour.dtype)
        return out if alpha is None else np.concatenate([out, alpha], axis=2)
    model = load(method).model.to(device())
    try:
        return n2n_denoise(model, noisy, progress=lambda done, total: progress((done, total), desc=f"{method}: tiles", unit="tiles"))
    except FloatingPointError as e:  # NaN weights, e.g. from a run that diverged
        raise UserError(f"Model {method!r} cannot denoise: {e}") from None


def method_label(method: str) -> str:
    return BASELINE_LABELS.get(method, f"n2n · {method}")


def clean_reference(path, noisy: np.ndarray) -> np.ndarray | None:
    """The clean reference as float colour channels, or None (absent, or not matching the noisy image)."""
    if not path:
        return None
    clean = to_float(split_alpha(read(path, "clean reference"))[0])
    if clean.shape != split_alpha(noisy)[0].shape:
        gr.Warning(f"The clean reference is {clean.shape[1]}×{clean.shape[0]}×{clean.shape[2]}, the noisy image "
                   f"{noisy.shape[1]}×{noisy.shape[0]}×{split_alpha(noisy)[0].shape[2]}: PSNR and SSIM left out.")
        return None
    return clean


# --------------------------------------------------------------------------- handlers: Corrupt and Denoise


def corrupt_image(image, noise="gaussian", param=API_DEFAULT_PARAM, seed=0):
    """Two independent noisy realisations of `image` and their PSNR (dB) against it."""
    clean = read(image)
    model = noise_model(noise)
    param = check_param(model, param)
    colour, alpha = split_alpha(clean)
    rng = np.random.default_rng(int(seed or 0))
    noisy = [n2n_corrupt(to_float(colour), noise, param, rng) for _ in range(2)]
    folder = workdir()
    paths = [save_png(folder / f"noisy_{k}.png", n, colour, alpha) for k, n in zip("AB", noisy)]
    scores = [round(psnr(to_float(colour), n), 2) for n in noisy]
    return paths[0], paths[1], scores[0], scores[1], {"clean": image, "noisy": paths[0], "noise": noise, "param": param}


def send_to_denoise(sent):
    if not sent:
        raise UserError("Nothing to send yet: corrupt an image first.")
    return (sent["noisy"], sent["clean"], sent["noise"], param_slider(sent["noise"], sent["param"]),
            gr.Accordion(open=True), gr.Tabs(selected="denoise"))


@gpu
def denoise_image(image, model="gaussian", hub_repo="", compare=None, clean=None, noise="gaussian",
                  param=API_DEFAULT_PARAM, progress=gr.Progress(), request: gr.Request = None):
    """Denoise `image` with `model` (or `hub_repo`), and with every method in `compare`; score them."""
    noisy = read(image, "noisy image")
    ref = (hub_repo or "").strip() or model
    for method in [ref, *(compare or [])]:
        check_session(method, request)
    loaded = load(ref)
    param = check_param(noise_model(noise), param)
    reference = clean_reference(clean, noisy)
    folder, stem = workdir(), safe_name(Path(image).stem)
    rows, gallery, main = [], [(image, "noisy input")], None
    if reference is not None:
        rows.append(score_row("noisy input", reference, noisy, 0.0))
        gallery = [(image, f"noisy input · {rows[0]['PSNR (dB)']:.2f} dB")]
    for method in dict.fromkeys([ref, *(compare or [])]):
        start = time.perf_counter()
        result = run_method(method, noisy, noise, param, progress)
        seconds = time.perf_counter() - start
        path = save_png(folder / f"{stem}_denoised_{safe_name(method)}.png", result, noisy)
        main = main or path
        row = score_row(method_label(method), reference, result, seconds)
        rows.append(row)
        caption = BASELINE_LABELS.get(method, method) + (f" · {row['PSNR (dB)']:.2f} dB" if reference is not None else "")
        gallery.append((path, caption))
    return (image, main), gallery, pd.DataFrame(rows), main, describe_source(ref, loaded)


def score_row(label: str, reference: np.ndarray | None, result: np.ndarray, seconds: float) -> dict:
    row = {"method": label}
    if reference is not None:
        colour = to_float(split_alpha(result)[0])
        row |= {"PSNR (dB)": round(psnr(reference, colour), 2), "SSIM": round(ssim(reference, colour), 4)}
    return row | {"seconds": round(seconds, 2)}


# --------------------------------------------------------------------------- fine-tuning


@dataclass
class Run:
    """One fine-tuning run as the UI shows it: its configs (N2N, maybe its N2C twin), curves and preview."""

    configs: list[TrainConfig]
    labels: list[str]
    folder: Path
    steps: int
    noisy_preview: np.ndarray  # the noisy crop the preview denoises (HxWxC, any dtype)
    noisy_val_psnr: float | None = None
    loss_points: list[dict] = field(default_factory=list)
    val_points: list[dict] = field(default_factory=list)
    last: list[dict] = field(default_factory=list)
    preview: str | None = None
    last_yield: float = 0.0

    def add(self, records: list[dict]) -> None:
        self.last = records
        for label, record in zip(self.labels, records):
            self.loss_points.append({"step": record["step"], "loss": record["loss"], "run": label})
            if "val_psnr" in record:
                self.val_points.append({"step": record["step"], "psnr": record["val_psnr"], "run": label})
        step = records[0]["step"]
        if step % self.configs[0].checkpoint_every == 0 or records[0].get("done"):
            self.refresh_preview()

    def due(self) -> bool:
        """Whether to send an update now: twice a second, on a validation and at the end."""
        return (time.monotonic() - self.last_yield > 0.5 or "val_psnr" in self.last[0]
                or bool(self.last[0].get("done")))

    def refresh_preview(self) -> None:
        """Denoise the preview crop with every run's current model: noisy | N2N [| N2C]."""
        self.preview = write_preview(self.folder / f"preview_{uuid.uuid4().hex[:8]}.png",
                                     ft.preview_panels(self.noisy_preview, self.last))

    def outputs(self, status: str | None = None, download=None, name=""):
        self.last_yield = time.monotonic()
        val_runs = self.labels if self.configs and self.configs[0].val else []
        # x_lim and the legend are part of the plot's drawing: a run with other runs in its legend redraws it
        return (gr.LinePlot(value=curve(self.loss_points, "loss", self.labels), x_lim=[0, self.steps],
                            colors_in_legend=self.labels),
                gr.LinePlot(value=curve(self.val_points, "psnr", val_runs), x_lim=[0, self.steps],
                            colors_in_legend=val_runs),
                self.preview, status or self.status(), download, name)

    def status(self) -> str:
        if not self.last:
            return "Loading the images and building the model…"
        record = self.last[0]
        text = (f"**step {record['step']} / {self.steps}** · loss {record['loss']:.4f} · "
                f"{record['steps_per_s']:.2f} steps/s · {format_eta(record.get('eta_s'))} left")
        if self.val_points:
            latest = {p["run"]: p["psnr"] for p in self.val_points}
            noisy = f"noisy input {self.noisy_val_psnr:.2f} dB → " if self.noisy_val_psnr else ""
            text += " · validation PSNR: " + noisy + ", ".join(f"{k} {v:.2f} dB" for k, v in latest.items())
        elif self.configs and not self.configs[0].val:
            text += " · no validation PSNR: it needs clean images"
        return text


def curve(points: list[dict], y: str, runs: list[str]) -> pd.DataFrame:
    """Plot data for a LinePlot coloured by run, from the first update on.

    The browser fixes the plot's axis types and colours when it first draws it, so every frame
    has numeric columns (an empty frame's would be categories) and names all `runs` from the
    start, each with an empty point at step 0 (y = NaN, which the plot skips).
    """
    anchors = [{"step": 0, y: float("nan"), "run": run} for run in runs]
    return pd.DataFrame(anchors + points, columns=["step", y, "run"]).astype({"step": "int64", y: "float64", "run": "str"})


def format_eta(seconds) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def write_preview(path: Path, panels: list[np.ndarray]) -> str:
    """Panels (HxWxC, any dtype, equal sizes) side by side as an 8-bit PNG; return the path."""
    return str(write_image(path, ft.preview_strip(panels)))


def write_uploads(files, folder: Path, what: str) -> list[np.ndarray]:
    """Check the uploaded images and write them to `folder` as 000.png, 001.png… (sorted by file name)."""
    if not files:
        raise UserError(f"No {what}: upload at least one image.")
    files = sorted((f if isinstance(f, str) else f.name for f in files), key=lambda f: Path(f).name)
    if len(files) > MAX_UPLOADS:
        raise UserError(f"Too many {what}: {len(files)} files; at most {MAX_UPLOADS} per run.")
    folder.mkdir(parents=True, exist_ok=True)
    images = [read(f, what) for f in files]
    if sum(i.shape[0] * i.shape[1] for i in images) > MAX_TRAIN_PIXELS:
        raise UserError(f"The {what} hold over {MAX_TRAIN_PIXELS // 1_000_000} megapixels together; use fewer or smaller images.")
    for k, image in enumerate(images):
        write_image(folder / f"{k:03d}.png", image)
    return images


def init_ref(init: str) -> str:
    """TrainConfig.init for the "start from" choice: '' (scratch), a bundled name or a checkpoint folder."""
    if not init or init == "scratch":
        return ""
    if init in hub.bundled_names():
        return init
    if init in _EXTRA or init in _FINETUNED:
        return str(_EXTRA.get(init) or _FINETUNED[init])
    raise UserError(f"Cannot start from {init!r}: choose 'scratch' or one of {', '.join(model_names())}.")


def prepare_run(files, second_shots, kind, noise, low, high, loss, steps, init, twin, seed) -> Run:
    """Write the uploads to disk and build the TrainConfig(s) of a run."""
    model = noise_model(noise)
    noise_range = check_range(model, low, high)
    if not 1 <= steps <= MAX_STEPS:
        raise UserError(f"Steps must be between 1 and {MAX_STEPS}, got {steps}.")
    start = init_ref(init)  # a UserError of its own (outside the try: gr.Error is a ValueError)
    folder = workdir("runs", max_age_s=24 * 3600)
    try:  # settings first, before any upload is written
        configs = ft.run_configs(folder, kind, noise, noise_range, None if loss in (None, "", "auto") else loss,
                                 steps, start, twin, seed, cuda=torch.cuda.is_available())
    except ValueError as e:
        raise UserError(f"{str(e)[0].upper()}{str(e)[1:]}.") from None
    images = write_uploads(files, folder / "data", "images")
    if kind == "pairs":
        partners = write_uploads(second_shots, folder / "target", "second shots")
        if len(partners) != len(images):
            raise UserError(f"Pairs need as many second shots as first shots: got {len(images)} and {len(partners)}.")
    labels = ["N2N (noisy targets)" if kind != "single" else "Neighbor2Neighbor", "N2C (clean targets)"][:len(configs)]
    crop = split_alpha(centre_crop(images[0], 128))[0]  # what the preview denoises
    if kind == "synthetic":
        crop = n2n_corrupt(to_float(crop), noise, model.default, np.random.default_rng(seed))
    run = Run(configs, labels, folder, steps, crop)
    if configs[0].val:
        pairs = validation_set(configs[0])
        run.noisy_val_psnr = float(np.mean([psnr(clean, noisy) for clean, noisy in pairs]))
    return run


def stop_flag(request: gr.Request | None) -> threading.Event:
    key = getattr(request, "session_hash", None) or "anonymous"
    event = _STOPS[key] = threading.Event()
    return event


@gpu(duration=600)
def finetune(files, noise="gaussian", kind="synthetic", second_shots=None, range_low=API_DEFAULT_RANGE[0],
             range_high=API_DEFAULT_RANGE[1], loss="auto", steps=200, init="scratch", twin=False, seed=0,
             request: gr.Request = None):
    """Fine-tune on the uploaded images; stream the curves, a preview and the time left; end with a checkpoint."""
    stop = stop_flag(request)
    check_session(init, request)
    if kind == "zero-shot":
        yield from zero_shot_run(files, int(steps), stop)
        return
    run = prepare_run(files, second_shots, kind, noise, range_low, range_high, loss, int(steps), init, bool(twin), int(seed or 0))
    yield run.outputs()
    try:
        for records in ft.lockstep(run.configs, stop.is_set):
            run.add(records)
            if run.due():
                yield run.outputs()
    except FloatingPointError as e:  # diverged; its message names folders on this server: not for the visitor
        raise UserError(f"Training diverged and stopped ({str(e).split(';')[0]}); the model it started from is "
                       f"unchanged. Try fewer steps, another loss or other images.") from None
    except ValueError as e:
        raise UserError(str(e)) from None
    if not run.last:
        raise UserError("The run stopped before its first step.")
    name = f"finetuned-{noise}-{uuid.uuid4().hex[:6]}"
    for key, config in zip((name, f"{name}-n2c"), run.configs):
        _FINETUNED[key], _OWNERS[key] = Path(config.out), session_key(request)
    done = "stopped" if run.last[0]["step"] < run.steps else "finished"
    yield run.outputs(f"{run.status()}\n\n**{done}**: `{name}` is ready; download it, use it in Denoise or push it to the Hub.",
                      str(ft.package(run.configs, run.folder / f"{name}.zip", name)), name)


def zero_shot_run(files, steps: int, stop: threading.Event):
    """Zero-Shot Noise2Noise on one noisy image, in a thread; stream its loss, end with the denoised PNG."""
    if not files or len(files) != 1:
        raise UserError("Zero-shot denoises one noisy image: upload exactly one.")
    if not 1 <= steps <= MAX_STEPS:
        raise UserError(f"Steps must be between 1 and {MAX_STEPS}, got {steps}.")
    path = files[0] if isinstance(files[0], str) else files[0].name
    noisy = read(path)
    colour, alpha = split_alpha(noisy)
    run = Run([], ["zero-shot"], workdir(), steps, centre_crop(colour, 128))
    try:
        for record in ft.zero_shot_records(to_float(colour), steps, stop.is_set):
            if record.get("stopped"):
                yield run.outputs("**stopped**: zero-shot training was stopped before the end; no result.")
                return
            if record.get("done"):
                break
            run.loss_points = [point | {"run": "zero-shot"} for point in record["losses"]]
            run.last = [record]
            yield run.outputs()
    except Exception as e:
        raise UserError(f"Zero-shot training failed: {e}") from None
    result = save_png(run.folder / f"{safe_name(Path(path).stem)}_zero_shot.png", record["result"], colour, alpha)
    run.preview = write_preview(run.folder / "preview.png", [run.noisy_preview, centre_crop(record["result"], 128)])
    yield run.outputs(f"{run.status()}\n\n**finished**: the denoised image is ready to download.", result, "")


def stop_run(request: gr.Request):
    event = _STOPS.get(getattr(request, "session_hash", None) or "anonymous")
    if event is not None:
        event.set()


def after_finetune(name, session):
    """Add the new model to this session's lists."""
    session = list(session or [])
    if name and name in _FINETUNED:
        session += [n for n in (name, f"{name}-n2c") if n in _FINETUNED and n not in session]
    return gr.Dropdown(choices=model_names(session)), gr.CheckboxGroup(choices=compare_choices(session)), session


def use_in_denoise(name, session):
    if not name or name not in _FINETUNED:
        raise UserError("No fine-tuned model yet: run a fine-tuning first.")
    return gr.Dropdown(choices=model_names(session), value=name), gr.Textbox(value=""), gr.Tabs(selected="denoise")


def oauth_enabled() -> bool:
    """Whether "Sign in with Hugging Face" works here: on a Space with `hf_oauth: true` and gradio[oauth].

    Elsewhere gradio's stand-in for it signs every visitor in with the machine's own login: never shown.
    """
    from importlib.util import find_spec

    return bool(os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID")
                and find_spec("authlib") and find_spec("itsdangerous"))


def push_to_hub(name, repo_id, token="", private=True, oauth_token: gr.OAuthToken | None = None,
                request: gr.Request = None):
    """Push a model fine-tuned in this session with the visitor's own credentials: the token typed, else
    their Hugging Face login; never the server's HF_TOKEN or saved login. Yields (message, token box).

    The token box is emptied at once: gradio keeps a session's inputs for "Share via Link" pages.
    """
    yield "", ""
    repo_id = (repo_id or "").strip()
    if not name or name not in _FINETUNED or _OWNERS.get(name) != session_key(request):
        raise UserError("No model fine-tuned in this session to push: run a fine-tuning first.")
    if not is_hub_ref(repo_id) or "@" in repo_id or ":" in repo_id:
        raise UserError("Give the Hub repo as owner/name.")
    token = (token or "").strip() or (oauth_token.token if oauth_token else "")
    if not token:
        raise UserError("Enter your Hugging Face access token (write)" + (" or sign in with Hugging Face" if oauth_enabled() else "")
                        + " to push: this app never pushes with its own credentials.")
    if not TOKEN_CHARS.fullmatch(token):  # httpx would quote the whole header, token and all, in its error
        raise UserError("That access token holds characters no token has (spaces, line breaks, accents): "
                        "copy it again from your Hugging Face settings.")
    folder = _FINETUNED[name]
    try:
        hub.write_model_card(folder)
        url = hub.push(folder, repo_id, token=token, private=bool(private))  # explicit: no fallback to HF_TOKEN
    except Exception as e:  # the token and the server's folder scrubbed from whatever the Hub or the client said
        reason = str(e).replace(token, "***").replace(str(folder), name).splitlines()
        raise UserError(f"Push to {repo_id} failed: {(reason or [type(e).__name__])[0][:300]}") from None
    yield f"Pushed `{name}` to [{repo_id}]({url}).", ""


def refresh_lists(session):
    names = model_names(session)
    return (gr.Dropdown(choices=names), gr.CheckboxGroup(choices=compare_choices(session)),
            gr.Dropdown(choices=["scratch", *names]))


def on_unload(request: gr.Request):
    stop_run(request)


# --------------------------------------------------------------------------- layout and wiring

INTRO = f"""# {TITLE}
Learn to remove noise **without ever seeing a clean image** (Lehtinen et al., *Noise2Noise*, ICML 2018).
Corrupt a photo, denoise it with the pretrained models, or fine-tune one on your own images."""

ABOUT_TABLE = "\n".join(f"| {m.name} | {m.param}: {m.units} | {m.train_range[0]:g} to {m.train_range[1]:g} | {m.loss} |"
                        for m in NOISE_MODELS.values())

ABOUT = f"""## The idea
A denoiser trained with a loss learns the statistic of the targets that the loss is minimised by.
With **noisy** targets whose noise averages out, that statistic is the clean image: so two noisy shots
of the same scene are enough to train on, and the result is as good as training with clean targets.

- **L2 loss → the mean**: zero-mean noise (Gaussian, Poisson).
- **L1 loss → the median**: noise that covers under half of the pixels (text overlay).
- **annealed L0 loss → the mode**: random-valued impulse noise, where the clean value is the most frequent.
- **L2 on the surviving pixels**: multiplicative Bernoulli noise (dropped pixels carry no information).

| noise | parameter | training range | loss |
|---|---|---|---|
{ABOUT_TABLE}

The Fine-tune tab also trains from **single** noisy images (Neighbor2Neighbor, Huang et al. 2021) or from
**one** noisy image alone (Zero-Shot Noise2Noise, Mansour & Heckel 2023), and can train the clean-target
twin (Noise2Clean) beside Noise2Noise, so both validation curves show live.

PSNR is measured as papers report it: on 8-bit output, per image. All images pass through lossless PNG.

**Paper:** [arXiv:1803.04189](https://arxiv.org/abs/1803.04189) · **Official code:**
[NVlabs/noise2noise](https://github.com/NVlabs/noise2noise)
"""

CSS = """
#status {min-height: 2.5em}
footer {display: none !important}
"""

LAUNCH_KWARGS = {"max_file_size": MAX_FILE_SIZE, "css": CSS, "theme": gr.themes.Soft()}


def build_demo(extra_models=None) -> gr.Blocks:
    """The app. `extra_models`: checkpoint folders to list beside the bundled ones
    (a dict name -> folder, or folders); N2N_EXTRA_MODELS adds more."""
    register_extra(extra_from_env())
    if extra_models:
        register_extra(extra_models)
    names = model_names()
    default_model = "gaussian" if "gaussian" in names else (names[0] if names else None)
    low0, high0 = range_sliders("gaussian")
    image_sources = ["upload", "webcam", "clipboard"]

    with gr.Blocks(title=TITLE, delete_cache=(3600, 3 * 3600)) as demo:
        session_models = gr.State([])
        sent = gr.State(None)
        gr.Markdown(INTRO)
        with gr.Tabs() as tabs:
            with gr.Tab("Corrupt", id="corrupt"):
                with gr.Row():
                    with gr.Column(scale=2):
                        clean_in = image_input(label="Clean image", type="filepath", image_mode=None,
                                            sources=image_sources, height=300, elem_id="clean-in")
                        gr.Examples([[p] for p in example_images()], inputs=clean_in, example_labels=list(EXAMPLES),
                                    cache_examples=False)
                        noise_dd = gr.Dropdown(list(NOISE_MODELS), value="gaussian", label="Noise")
                        param = param_slider("gaussian", elem_id="param")
                        seed = gr.Number(0, precision=0, label="Seed")
                        corrupt_btn = gr.Button("Corrupt", variant="primary")
                    with gr.Column(scale=3):
                        with gr.Row(equal_height=True):
                            noisy_a = gr.Image(label="Noisy realisation A", format="png", type="filepath",
                                               interactive=False, height=340, elem_id="noisy-a")
                            noisy_b = gr.Image(label="Noisy realisation B", format="png", type="filepath",
                                               interactive=False, height=340, elem_id="noisy-b")
                        with gr.Row():
                            psnr_a = gr.Number(label="PSNR of A vs clean (dB)", precision=2, interactive=False)
                            psnr_b = gr.Number(label="PSNR of B vs clean (dB)", precision=2, interactive=False)
                        gr.Markdown("A and B are independent draws of the same noise: a Noise2Noise training pair.")
                        send_btn = gr.Button("Send A to Denoise →")

            with gr.Tab("Denoise", id="denoise"):
                with gr.Row():
                    with gr.Column(scale=2):
                        noisy_in = image_input(label="Noisy image", type="filepath", image_mode=None,
                                            sources=image_sources, height=300, elem_id="noisy-in")
                        model_dd = gr.Dropdown(names, value=default_model, label="Model", allow_custom_value=True,
                                               info="bundled models, and the ones you fine-tune here")
                        hub_box = gr.Textbox("", label="…or a model on the Hugging Face Hub", placeholder="owner/name[@revision]")
                        compare = gr.CheckboxGroup(compare_choices(), value=[], label="Compare with")
                        with gr.Accordion("Clean reference and noise level (optional)", open=False) as ref_box:
                            clean_ref = image_input(label="Clean reference, for PSNR and SSIM", type="filepath",
                                                 image_mode=None, height=200)
                            base_noise = gr.Dropdown(list(NOISE_MODELS), value="gaussian",
                                                     label="Noise in the image (tunes the classical baselines)")
                            base_param = param_slider("gaussian")
                        denoise_btn = gr.Button("Denoise", variant="primary")
                    with gr.Column(scale=3):
                        slider = gr.ImageSlider(label="Noisy ↔ denoised", format="png", type="filepath",
                                                interactive=False, max_height=520, elem_id="slider")
                        source_md = gr.Markdown(label="Model source", elem_id="source")
                        with gr.Row(equal_height=True):
                            download = gr.File(label="Denoised PNG, full resolution", scale=3)
                            gr.DeepLinkButton(scale=1)
                        gallery = gr.Gallery(label="Every result", format="png", columns=4, height=260,
                                             object_fit="contain", elem_id="gallery")
                        table = gr.Dataframe(label="Scores (PSNR and SSIM when a clean reference is known)",
                                             interactive=False, elem_id="scores")

            with gr.Tab("Fine-tune", id="finetune"):
                with gr.Row():
                    with gr.Column(scale=2):
                        ft_files = gr.File(label="Images", file_count="multiple", file_types=["image"], height=180,
                                           elem_id="ft-files")
                        ft_kind = gr.Radio(KINDS, value="synthetic", label="What are these images?")
                        ft_second = gr.File(label="Second noisy shots (same scenes; paired by sorted file name)",
                                            file_count="multiple", file_types=["image"], visible=False, height=140)
                        ft_noise = gr.Dropdown(list(NOISE_MODELS), value="gaussian", label="Noise",
                                               info="synthesised on clean images; also the validation noise")
                        with gr.Row():
                            ft_low, ft_high = range_sliders("gaussian")
                        ft_loss = gr.Dropdown(LOSSES, value="auto", label="Loss",
                                              info="single noisy images and zero-shot use their own losses")
                        ft_steps = gr.Slider(1, MAX_STEPS, value=200, step=1, label="Steps", elem_id="ft-steps")
                        ft_init = gr.Dropdown(["scratch", *names], value="scratch", label="Start from",
                                              allow_custom_value=True)
                        ft_twin = gr.Checkbox(label="Train the clean-target twin alongside (Noise2Clean)")
                        ft_seed = gr.Number(0, precision=0, label="Seed")
                        with gr.Row():
                            start_btn = gr.Button("Start", variant="primary")
                            stop_btn = gr.Button("Stop", variant="stop")
                    with gr.Column(scale=3):
                        ft_status = gr.Markdown("Upload images, choose the settings and press Start.", label="Status",
                                                elem_id="status")
                        with gr.Row():
                            loss_plot = gr.LinePlot(x="step", y="loss", color="run", label="Training loss", color_title="",
                                                    y_title="loss", elem_id="loss-plot")
                            val_plot = gr.LinePlot(x="step", y="psnr", color="run", label="Validation PSNR", color_title="",
                                                   y_title="PSNR (dB)", elem_id="val-plot")
                        preview = gr.Image(label="Preview: noisy | denoised by the model as it trains", format="png",
                                           interactive=False, height=220, elem_id="preview")
                        with gr.Row(equal_height=True):
                            ft_download = gr.File(label="Checkpoint (.zip: model.safetensors + config.json)", scale=2)
                            ft_name = gr.Textbox(label="Fine-tuned model", interactive=False, scale=1)
                        use_btn = gr.Button("Use in Denoise →")
                        with gr.Accordion("Push to the Hugging Face Hub", open=False):
                            gr.Markdown("Pushes go to your account, with your token"
                                        + (" or your Hugging Face login" if oauth_enabled() else "")
                                        + ": this app never uses its own credentials, and keeps no token.")
                            if oauth_enabled():
                                gr.LoginButton()
                            with gr.Row():
                                repo_box = gr.Textbox("", label="Repo id", placeholder="your-name/n2n-my-camera")
                                token_box = gr.Textbox("", label="Your access token (write)", type="password")
                            private_cb = gr.Checkbox(value=True, label="Private repo")
                            push_btn = gr.Button("Push")
                            push_md = gr.Markdown(label="Push result")

            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT)

        # ----------------------------------------------------------------- events
        private = {"api_visibility": "private"}
        noise_dd.input(param_slider, noise_dd, param, **private)
        base_noise.input(param_slider, base_noise, base_param, **private)
        ft_noise.input(range_sliders, ft_noise, [ft_low, ft_high], **private)
        ft_kind.change(lambda kind: gr.File(visible=kind == "pairs"), ft_kind, ft_second, **private)
        corrupt_btn.click(corrupt_image, [clean_in, noise_dd, param, seed], [noisy_a, noisy_b, psnr_a, psnr_b, sent],
                          api_name="corrupt")
        send_btn.click(send_to_denoise, sent, [noisy_in, clean_ref, base_noise, base_param, ref_box, tabs], **private)
        denoise_btn.click(denoise_image, [noisy_in, model_dd, hub_box, compare, clean_ref, base_noise, base_param],
                          [slider, gallery, table, download, source_md], api_name="denoise")
        start_btn.click(finetune, [ft_files, ft_noise, ft_kind, ft_second, ft_low, ft_high, ft_loss, ft_steps, ft_init,
                                   ft_twin, ft_seed],
                        [loss_plot, val_plot, preview, ft_status, ft_download, ft_name], api_name="finetune",
                        concurrency_limit=1, concurrency_id="finetune", show_progress="minimal",
                        ).success(after_finetune, [ft_name, session_models], [model_dd, compare, session_models], **private)
        stop_btn.click(stop_run, None, None, queue=False, api_name="stop")
        use_btn.click(use_in_denoise, [ft_name, session_models], [model_dd, hub_box, tabs], **private)
        push_btn.click(push_to_hub, [ft_name, repo_box, token_box, private_cb], [push_md, token_box], api_name="push",
                       show_progress_on=push_md)
        demo.load(refresh_lists, session_models, [model_dd, compare, ft_init], **private)
        demo.unload(on_unload)
    demo.queue(default_concurrency_limit=2, max_size=32)
    return demo


demo = build_demo()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--share", action="store_true", help="create a public share link")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--concurrency", type=int, default=2, help="calls served at once (fine-tuning: always one)")
    parser.add_argument("--queue-size", type=int, default=32, help="calls that may wait in the queue")
    args = parser.parse_args()
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size)
    demo.launch(share=args.share, server_name=args.host, server_port=args.port, **LAUNCH_KWARGS)
