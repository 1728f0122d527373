"""Many photos in one click, the Denoise tab's "Many photos at once": images, or zips of images, each
checked as a single upload is, denoised with the tab's model, stride and self-ensemble; back a zip of the
PNGs, a gallery and one row per file (a refused file's row says why, in words, and the others go on).

Endpoint /denoise_batch (files, model, Hub repo, stride, ensemble).
"""
from __future__ import annotations

import time
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from n2n.infer import model_stride
from n2n.io import ImageError, read_icc_profile, read_image
from ui.common import MAX_PIXELS, PHOTO_TYPES, UserError, gpu, safe_name, save_png, workdir
from ui.denoise import check_stride, run_method
from ui.registry import check_session, load

MAX_BATCH_FILES = 32  # images per call, a zip's images counted one by one (SECURITY.md)
MAX_BATCH_PIXELS = 64_000_000  # all of a call's images together (as a fine-tuning run's)
MAX_MEMBER_BYTES = 20 * 2**20  # one image inside a zip: as much as one upload (ui.common.MAX_FILE_SIZE)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".heic", ".heif", ".tif", ".tiff", ".bmp", ".webp"}
GALLERY_KEPT = 12  # results shown in the gallery (all are in the zip)


def entries(files) -> list[tuple[str, object]]:
    """(name, source) of every image in `files` (paths; a .zip stands for the images inside it, its
    folders, hidden files and non-images skipped), by file name: source is a path, or (zip path, member)."""
    found = []
    for path in sorted((str(f if isinstance(f, str) else f.name) for f in files), key=lambda p: (Path(p).name, p)):
        if Path(path).suffix.lower() != ".zip":
            found.append((Path(path).name, path))
            continue
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
        except (zipfile.BadZipFile, OSError):
            raise UserError(f"{Path(path).name} is not a zip file that can be read: upload images, or a "
                            "zip made by your system's compress command.") from None
        for member in sorted(members, key=lambda m: m.filename):
            name = Path(member.filename).name
            if name.startswith(".") or "__MACOSX" in member.filename or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            found.append((f"{Path(path).name}/{member.filename}", (path, member.filename)))
    return found


def read_entry(name: str, source) -> tuple[np.ndarray, bytes | None]:
    """The image of one entry (HxWxC at its own bit depth) and its colour profile (`read_icc_profile`), or
    UserError naming it."""
    if isinstance(source, str):
        src = source
    else:
        path, member = source
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(member)
            if info.flag_bits & 0x1:
                raise UserError(f"{name}: encrypted inside its zip; zip it without a password.")
            if info.file_size > MAX_MEMBER_BYTES:
                raise UserError(f"{name}: {info.file_size / 2**20:.1f} MB, over the {MAX_MEMBER_BYTES / 2**20:g} MB "
                                "of one upload.")
            with archive.open(info) as f:
                src = f.read(MAX_MEMBER_BYTES + 1)  # the size a zip declares can lie
            if len(src) > MAX_MEMBER_BYTES:
                raise UserError(f"{name}: over the {MAX_MEMBER_BYTES / 2**20:g} MB of one upload.")
    try:
        return read_image(src, dtype=None, max_pixels=MAX_PIXELS), read_icc_profile(src)
    except ImageError as e:
        message = e.user_message.replace(src, Path(src).name) if isinstance(src, str) else e.user_message
        raise UserError(message if message.startswith(f"{name}:") else f"{name}: {message}") from None


def unique_name(stem: str, taken: set[str]) -> str:
    """`stem`_denoised.png, numbered when a file of that name is already in the zip."""
    name, n = f"{stem}_denoised.png", 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}_denoised.png"
    taken.add(name)
    return name


@gpu(duration=300)
def denoise_batch(files, model="gaussian", hub_repo="", stride="auto", ensemble=False, progress=gr.Progress(),
                  request: gr.Request = None):
    """Denoise many photos in one call with one model: images, or zip files of images, each checked as a single
    upload is; a file that cannot be read is named in its row and the others go on.

    Args:
        files: the images (PNG, JPEG, HEIC, TIFF, BMP or WebP, 16 megapixels each) or zips of them; 32 images,
            64 MP in all.
        model: the model to denoise with (bundled, e.g. gaussian or camera, or fine-tuned in this session).
        hub_repo: a model on the Hugging Face Hub instead (owner/name[@revision]); empty: `model`.
        stride: the pixel-shuffle stride, "auto" (the model's own) or "1" to "4" (2 for real photos' noise).
        ensemble: the ×8 self-ensemble (4 rotations × 2 flips averaged): a little better, 8× slower.
    Returns:
        the denoised images as full-resolution PNGs, in one zip
        the first 12 results (a gallery of PNG files)
        one row per file: its name, its result file (or why it was refused), seconds
        a summary in words
    """
    if not files:
        raise UserError("No images: upload one or more images, or a zip of them.")
    found = entries(files)
    if not found:
        raise UserError("No images in the upload: give PNG, JPEG, HEIC, TIFF, BMP or WebP files, or a zip of them.")
    if len(found) > MAX_BATCH_FILES:
        raise UserError(f"Too many images: {len(found)}; at most {MAX_BATCH_FILES} per batch (split them up).")
    ref = (hub_repo or "").strip() or model
    check_session(ref, request)
    net = load(ref).model  # loaded (and refused in one sentence) before any image is read
    stride = check_stride(stride)
    folder = workdir()
    rows, gallery, written, taken, pixels = [], [], [], set(), 0
    for i, (name, source) in enumerate(found):
        progress((i, len(found)), desc=f"{name}: reading", unit="images")
        try:
            noisy, profile = read_entry(name, source)
        except UserError as e:
            rows.append({"file": name, "result": f"refused: {e.message}", "seconds": 0.0})
            continue
        pixels += noisy.shape[0] * noisy.shape[1]
        if pixels > MAX_BATCH_PIXELS:
            rows.append({"file": name, "result": f"left out: the batch passed {MAX_BATCH_PIXELS / 1e6:g} "
                                                 "megapixels; denoise it in another batch", "seconds": 0.0})
            continue
        start = time.perf_counter()
        # a model only (load refused anything else): run_method's noise and level are the baselines'
        result = run_method(ref, noisy, "", 0.0, lambda tiles, i=i, name=name, **_: progress(
            (i + tiles[0] / tiles[1], len(found)), desc=f"{name}: denoising", unit="images"), stride, bool(ensemble))
        out = unique_name(safe_name(Path(name).stem), taken)
        path = save_png(folder / out, result, noisy, profile)
        written.append((path, out))
        gallery.append((path, name))
        rows.append({"file": name, "result": f"{out} ({noisy.shape[1]}×{noisy.shape[0]})",
                     "seconds": round(time.perf_counter() - start, 2)})
    if not written:
        raise UserError("Every file was refused: " + "; ".join(r["result"].removeprefix("refused: ")
                                                                 for r in rows[:3]) + ("; …" if len(rows) > 3 else ""))
    archive = folder / "denoised.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:  # PNGs are compressed already
        for path, out in written:
            z.write(path, out)
    refused = len(rows) - len(written)
    used = model_stride(net) if stride is None else stride
    summary = (f"**{len(written)} of {len(rows)}** image{'s' if len(rows) != 1 else ''} denoised with **{ref}**"
               + (f" at pixel-shuffle stride {used}" if used > 1 else "") + (", ×8 self-ensemble" if ensemble else "")
               + f" in {sum(r['seconds'] for r in rows):.1f} s"
               + (f"; {refused} refused or left out (see the table)." if refused else ".")
               + (f" The gallery shows the first {GALLERY_KEPT}; the zip holds all." if len(gallery) > GALLERY_KEPT
                  else ""))
    return str(archive), gallery[:GALLERY_KEPT], pd.DataFrame(rows), summary


def build(model: gr.Dropdown, hub_repo: gr.Textbox, stride: gr.Dropdown, ensemble: gr.Checkbox) -> None:
    """The "Many photos at once" accordion, inside the Denoise tab: it uses that tab's model, Hub repo,
    stride and ensemble."""
    with gr.Accordion("Many photos at once", open=False, elem_id="batch"):
        gr.Markdown(f"Up to {MAX_BATCH_FILES} images, or zips of them, with the model and settings above; "
                    "back a zip of full-resolution PNGs.")
        with gr.Row():
            with gr.Column(scale=2):
                files = gr.File(label="Images or zips", file_count="multiple", file_types=[*PHOTO_TYPES, ".zip"],
                                height=160, elem_id="batch-files")
                start = gr.Button("Denoise all", variant="primary", elem_id="batch-btn")
                summary = gr.Markdown("", elem_id="batch-summary")
                download = gr.File(label="Denoised PNGs (.zip)")
            with gr.Column(scale=3):
                gallery = gr.Gallery(label="Denoised", format="png", columns=4, height=260, object_fit="contain",
                                     elem_id="batch-gallery")
                table = gr.Dataframe(label="One row per file", interactive=False, elem_id="batch-table")
    start.click(denoise_batch, [files, model, hub_repo, stride, ensemble], [download, gallery, table, summary],
                api_name="denoise_batch")
