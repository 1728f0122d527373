"""What every tab shares: the limits per visitor, errors shown to visitors, uploads read once and
checked, files written under WORK, and the noise parameter sliders and their checks."""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.events import Dependency
from PIL import Image

from n2n.io import ImageError, read_image, with_alpha, write_image
from n2n.noise import NOISE_MODELS, get_noise

try:  # ZeroGPU Spaces: borrow a GPU for the duration of a call
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn=None, **_):
        """No-op stand-in for `spaces.GPU` (usable bare or with arguments)."""
        return fn if fn is not None else (lambda f: f)

# Limits per visitor (SECURITY.md)
MAX_FILE_SIZE = "20mb"  # per upload, enforced by the server (HTTP 413)
MAX_PIXELS = 16_000_000  # per uploaded image
MAX_STEPS = 2000  # fine-tuning budget per run
MAX_UPLOADS = 64  # images per fine-tuning run
MAX_TRAIN_PIXELS = 64_000_000  # all of a run's images together (they are kept in memory)

WORK = Path(tempfile.gettempdir()) / "n2n-app"  # the system temp dir: Gradio may serve files from it
# How long and how much the app keeps of its visitors' files under WORK (results, fine-tuning runs):
KEEP_S = float(os.environ.get("N2N_KEEP_S", 24 * 3600))  # seconds any call's or run's folder is kept at most
WORK_BUDGET_MB = float(os.environ.get("N2N_WORK_MB", 2048))  # beyond this, the oldest folders go first
MIN_KEEP_S = min(600.0, KEEP_S)  # ... but never one touched this recently
PRUNE_EVERY_S = 30.0  # how often an area's folders are pruned (not on every call: it walks them all)
_PRUNED: dict[Path, float] = {}  # WORK/area -> time.monotonic() of its last prune
_PRUNE_LOCK = threading.Lock()
IMAGE_SOURCES = ["upload", "webcam", "clipboard"]  # of the image inputs

# The parameter an API call sends when it leaves the slider out: the Gaussian default. For another
# noise whose range excludes it, it stands for "not given" and that noise's own default is used.
API_DEFAULT_PARAM = NOISE_MODELS["gaussian"].default
API_DEFAULT_RANGE = NOISE_MODELS["gaussian"].noise_range


class UserError(gr.Error):
    """Bad input, said in plain words to the user; no traceback in the server log."""

    def __init__(self, message: str):
        super().__init__(message, print_exception=False)


def session_key(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


# --------------------------------------------------------------------------- files and images


# What every photo upload lists beside images: the formats a browser may not type as image/* (a
# HEIC copied from an iPhone to a Windows PC has no type there, and gr.Image takes only image/* files)
PHOTO_TYPES = ["image", ".heic", ".heif", ".tif", ".tiff"]


@dataclass
class ImageInput:
    """An image input (`image_input`): the gr.Image, and the button under it that picks any photo, HEIC and TIFF
    included, into it (`picked`: that button's upload event, the image set)."""

    image: gr.Image
    picker: gr.UploadButton
    picked: Dependency

    def on_upload(self, fn, outputs, **kwargs) -> None:
        """Run fn(image's value) -> outputs after either way of uploading (after the button's only when it took the
        file: not after Gradio refused a type the button does not list)."""
        self.image.upload(fn, self.image, outputs, **kwargs)
        self.picked.success(fn, self.image, outputs, **kwargs)


def image_input(**kwargs) -> ImageInput:
    """A gr.Image input (type="filepath") whose upload reaches the handler unopened, for `read` to check,
    and is shown as a PNG of the same pixels when browsers cannot draw its format (`drawable`: HEIC, TIFF);
    under it, a button that picks the files that the image's own upload refuses for their browser type (`picked`).
    Call it inside the Blocks: it wires its own events.

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
    component.upload(drawable, component, component, api_visibility="private", show_progress="hidden")
    elem_id = kwargs.get("elem_id")
    picker = gr.UploadButton("Choose a photo file (HEIC and TIFF too)", file_types=PHOTO_TYPES, size="sm",
                             variant="secondary", elem_id=f"{elem_id}-pick" if elem_id else None)
    picked = picker.upload(picked_image, picker, component, api_visibility="private", show_progress="hidden")
    return ImageInput(component, picker, picked)


def picked_image(path):
    """The picker's file for the image input: as `drawable` shows it (a PNG of a HEIC's or TIFF's pixels), else
    as it is, for the tab's handlers to read and, if it is not an image after all (a page named .jpg), to say so.
    (A file of a type PHOTO_TYPES does not list never gets here: Gradio refuses it, naming the types.)"""
    return gr.skip() if path is None else (drawn_copy(path) or str(path))


# Image formats that Chrome and Firefox do not draw (an upload's preview would be a broken image): HEIC, which
# iPhones save photos as, and TIFF
UNDRAWN_FORMATS = ("HEIF", "TIFF")


def drawable(path):
    """The image input's upload handler: `drawn_copy(path)`, or gr.skip() (the upload stays as it is)."""
    return drawn_copy(path) or gr.skip()


def drawn_copy(path) -> str | None:
    """An uploaded image in one of UNDRAWN_FORMATS as a PNG of the very same pixels (8 or 16 bits, EXIF rotation
    applied, alpha kept), for the input to show and every later step to read; None for any other file, and
    for one that does not read (the tab's own handlers say what is wrong with it) or holds floats (a float TIFF
    stays as it is: a PNG would round it to 16 bits)."""
    try:
        with Image.open(path) as im:
            undrawn, profile = im.format in UNDRAWN_FORMATS, im.info.get("icc_profile")
        image = read_image(path, dtype=None, max_pixels=MAX_PIXELS) if undrawn else None
    except Exception:  # not an image, damaged, too big: left to the handlers that read it
        return None
    if image is None or image.dtype == np.float32:
        return None
    return str(write_image(workdir() / f"{safe_name(Path(path).stem)}.png", image, icc_profile=profile))


def workdir(area: str = "calls", max_age_s: float = 3 * 3600) -> Path:
    """A fresh folder for one call's files under WORK/area ("calls", "runs"...); `prune(area, max_age_s)`
    first when the last prune of that area is PRUNE_EVERY_S old (it walks every file under WORK: ~25 ms per 3,000)."""
    root = WORK / area
    root.mkdir(parents=True, exist_ok=True)
    now = time.monotonic()
    with _PRUNE_LOCK:
        due = now - _PRUNED.get(root, -PRUNE_EVERY_S) >= PRUNE_EVERY_S
        if due:
            _PRUNED[root] = now
    if due:
        prune(area, max_age_s)
        release_memory()
    return Path(tempfile.mkdtemp(dir=root))


def release_memory() -> bool:
    """Hand the free pages of the C heap back to the system (glibc's malloc_trim); False where the C
    library has none (not glibc). An image's buffers, freed, stay resident in the malloc arena of the
    worker thread that made them; without this the server's RSS crept up by MBs a minute under steady
    traffic (issue 14's soak). A few ms per call; workdir calls it with each prune."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (AttributeError, OSError, TypeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def prune(area: str, max_age_s: float) -> None:
    """Remove the folders under WORK/area untouched for `max_age_s` (KEEP_S at most), then the oldest
    folders under WORK (examples aside) until it holds at most WORK_BUDGET_MB, never one touched in
    the last MIN_KEEP_S."""
    now = time.time()
    folders = []  # (last touched, MB, folder) of every call's and run's folder under WORK
    for parent in [p for p in WORK.iterdir() if p.is_dir() and p.name != "examples"]:
        for folder in parent.iterdir():
            touched, size = _usage(folder)
            if parent.name == area and now - touched > min(max_age_s, KEEP_S):
                shutil.rmtree(folder, ignore_errors=True)
            else:
                folders.append((touched, size / 2**20, folder))
    total = sum(mb for _, mb, _ in folders)
    for touched, mb, folder in sorted(folders, key=lambda f: f[0]):
        if total <= WORK_BUDGET_MB or now - touched < MIN_KEEP_S:
            break
        shutil.rmtree(folder, ignore_errors=True)
        total -= mb


def _usage(path: Path) -> tuple[float, int]:
    """(latest modification time, bytes) over `path` and everything under it, skipping what is removed
    meanwhile (another call's clean-up, an atomic write's temporary file); (now, 0) if `path` itself went."""
    try:
        info = path.lstat()
    except OSError:
        return time.time(), 0  # gone: nothing to remove, nothing to count
    touched, size = info.st_mtime, 0 if path.is_dir() else info.st_size
    for parent, _, names in os.walk(path):
        for name in names:
            try:
                info = os.lstat(os.path.join(parent, name))
            except OSError:
                continue
            touched, size = max(touched, info.st_mtime), size + info.st_size
    return touched, size


def read(path, what: str = "image") -> np.ndarray:
    """The image at `path` (HxWxC at its own bit depth) or a gr.Error in plain words."""
    if not path:
        raise UserError(f"No {what}: upload one first (or pick an example).")
    try:
        return read_image(path, dtype=None, max_pixels=MAX_PIXELS)
    except ImageError as e:
        raise UserError(e.user_message.replace(str(path), Path(path).name)) from None


def save_png(path: Path, result: np.ndarray, like: np.ndarray, icc_profile: bytes | None = None) -> str:
    """Write `result`, made from the visitor's image `like` (HxWxC as `read` gives it), as a PNG in
    like's form (n2n.io.with_alpha: its bit depth, and its alpha appended when `result` is colour
    only), with like's colour profile (`read_icc_profile` of its file: a phone's Display P3 photo comes
    back in its own colours); return the path."""
    return str(write_image(path, with_alpha(result, like), icc_profile=icc_profile))


def safe_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "image"


# --------------------------------------------------------------------------- noise settings


def noise_model(name: str):
    try:
        return get_noise(name)
    except ValueError as e:
        raise UserError(str(e)) from None


def slider_step(model) -> float:
    return 50.0 if model.limits[1] > 1000 else (1.0 if model.limits[1] > 2 else 0.01)  # ISO in steps of 50


def param_slider(noise: str, value: float | None = None, **kwargs) -> gr.Slider:
    """The parameter slider for `noise`: its symbol, units and limits, at `value` (default: the test setting)."""
    m = get_noise(noise)
    return gr.Slider(minimum=m.limits[0], maximum=m.limits[1], step=slider_step(m),
                     value=m.default if value is None else value, label=f"{m.param}: {m.units}", **kwargs)


def range_sliders(noise: str) -> tuple[gr.Slider, gr.Slider]:
    """The two sliders of the training range of `noise`, at its default range."""
    m = get_noise(noise)
    common = dict(minimum=m.limits[0], maximum=m.limits[1], step=slider_step(m))
    return (gr.Slider(value=m.noise_range[0], label=f"training {m.param} from", **common),
            gr.Slider(value=m.noise_range[1], label=f"training {m.param} to", **common))


def check_param(model, param) -> float:
    lo, hi = model.limits
    if param is None or (param == API_DEFAULT_PARAM and model.name != "gaussian" and not lo <= param <= hi):
        return model.default
    if not lo <= param <= hi:
        raise UserError(f"{model.name} {model.param} = {param} is outside [{lo}, {hi}] ({model.units}).")
    return float(param)


def check_range(model, low, high) -> tuple[float, float]:
    if (low, high) == tuple(API_DEFAULT_RANGE) and model.name != "gaussian":
        return model.noise_range
    lo, hi = model.limits
    if not lo <= low <= high <= hi:
        raise UserError(f"the training range of {model.param} must satisfy {lo} ≤ from ≤ to ≤ {hi}; "
                       f"got {low} to {high}.")
    return float(low), float(high)
