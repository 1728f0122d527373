"""Safe image reading and writing.

read_image() turns a file (or bytes) into an HxWxC numpy array, refusing
anything that is not a complete, sane image with a one-line ImageError.
write_image() always writes a lossless PNG, atomically.

Arrays are HxWxC with C = 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA).
Float images hold values in [0, 1] (uint8 0..255 and uint16 0..65535 map there).

Decoding: Pillow for everything it reads at full depth (HEIC / HEIF through pillow-heif, which
applies the file's rotation and mirroring as it decodes, at 8 bits); OpenCV for 16-bit RGB(A)
PNG/TIFF (Pillow would reduce them to 8 bits) and for float RGB TIFF (Pillow
cannot open it).  Pillow's 32-bit integer mode "I" is accepted only when every
value fits in 0..65535 (returned as uint16); anything else is refused rather
than rescaled by a guess.

Why one long module (~485 lines): every byte a visitor uploads passes through here, and each
refusal (truncated files, decompression bombs, odd modes and bit depths, EXIF rotation, animated
files) sits next to the decoder it guards, so that one file shows everything an upload can meet.
"""

from __future__ import annotations

import codecs
import io
import os
import pathlib
import re
import uuid
import warnings
import zlib

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, TiffImagePlugin, UnidentifiedImageError
from pillow_heif import register_heif_opener

register_heif_opener()  # HEIC / HEIF through Pillow: what iPhones (and many Android phones) save photos as

__all__ = ["ImageError", "DEFAULT_MAX_PIXELS", "read_image", "read_icc_profile", "write_image", "to_float",
           "from_float", "to_uint8", "split_alpha", "with_alpha", "centre_crop", "write_atomic", "reason"]

DEFAULT_MAX_PIXELS = 40_000_000

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*")
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")  # after "ftyp"
_EXIF_ORIENTATION = 0x0112
# Pillow modes converted before turning into an array; others are used as they are.
_CONVERT = {"1": "L", "La": "LA", "PA": "RGBA", "RGBa": "RGBA", "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB"}
_ARRAY_MODES = ("L", "LA", "RGB", "RGBA", "F")
# EXIF orientation -> the same transform as ImageOps.exif_transpose, on an HxWxC array.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: a.swapaxes(0, 1)[:, ::-1],
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: a.swapaxes(0, 1)[::-1],
}


class ImageError(ValueError):
    """One-line, user-facing message saying what is wrong with the file and what to do.

    `for_caller`: advice for the program calling read_image (e.g. "pass a larger max_pixels"),
    appended to str(e) after "; " but left out of `user_message`, what a web visitor reads.
    """

    def __init__(self, message: str, for_caller: str = ""):
        super().__init__(f"{message}; {for_caller}" if for_caller else message)
        self.user_message = message


# --------------------------------------------------------------------------- conversions


def to_float(image) -> np.ndarray:
    """uint8 / 255 or uint16 / 65535 -> float32 in [0, 1]; float arrays become float32 unchanged."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255)
    if image.dtype == np.uint16:
        return image.astype(np.float32) / np.float32(65535)
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32, copy=False)
    raise ValueError(f"to_float: unsupported dtype {image.dtype}; expected uint8, uint16 or float")


def from_float(image, dtype) -> np.ndarray:
    """Float image (nominally [0, 1]) -> clipped to [0, 1], then rounded to uint8 (0..255),
    uint16 (0..65535), or kept as float32."""
    dtype = np.dtype(dtype)
    image = np.asarray(image, dtype=np.float32)
    if np.isnan(image).any():
        raise ValueError("from_float: image contains NaN values")
    image = np.clip(image, 0.0, 1.0)
    if dtype == np.float32:
        return image
    if dtype in (np.uint8, np.uint16):
        return np.rint(image * np.float32(np.iinfo(dtype).max)).astype(dtype)
    raise ValueError(f"from_float: unsupported dtype {dtype}; expected uint8, uint16 or float32")


def to_uint8(image) -> np.ndarray:
    """uint8 as is; uint16 or float (nominally [0, 1]) through `from_float`: clipped, then rounded to 0..255."""
    image = np.asarray(image)
    return image if image.dtype == np.uint8 else from_float(to_float(image), np.uint8)


# --------------------------------------------------------------------------- reading


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, C) -> colour (H, W, 1 or 3) and alpha (H, W, 1), or None when C is 1 or 3."""
    c = image.shape[2]
    if c in (2, 4):
        return image[..., : c - 1], image[..., c - 1:]
    if c not in (1, 3):
        raise ValueError(f"expected 1 to 4 channels, got {c}")
    return image, None


def with_alpha(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    """`result`, made from the colour channels of `like` (H, W, C; `split_alpha`), put in like's form:
    its dtype (a float result clipped to [0, 1] and, for integer `like`, rounded: `from_float`) and
    its alpha, when it has one, appended unchanged. The one alpha pass-through of n2n: split the
    alpha off, work on the colour, then `with_alpha(result, image)`. A `result` with as many
    channels as `like` holds its alpha already and keeps it."""
    colour, alpha = split_alpha(like)
    result = np.asarray(result)
    if result.dtype != like.dtype or result.dtype.kind == "f":
        result = from_float(to_float(result), like.dtype)
    if result.shape[2] not in (colour.shape[2], like.shape[2]):
        raise ValueError(f"with_alpha: a result of {result.shape[2]} channels for an image of {like.shape[2]}")
    if alpha is None or result.shape[2] == like.shape[2]:
        return result
    return np.concatenate([result, alpha], axis=2)


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central min(size, H, W)-pixel square of image (H, W, ...), contiguous."""
    h, w = image.shape[:2]
    s = min(size, h, w)
    return np.ascontiguousarray(image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s])


def read_image(src, *, max_pixels=DEFAULT_MAX_PIXELS, dtype="float32") -> np.ndarray:
    """Read an image as an HxWxC array (C = 1, 2, 3 or 4: gray, gray+alpha, RGB, RGBA).

    src: a path (str / os.PathLike), bytes / bytearray, or a binary file-like object.
    max_pixels: refuse images with more than this many pixels (width * height), checked
        from the header before any pixel is decoded.
    dtype: "float32" -> float32 in [0, 1] (float files are returned as stored);
        None -> native depth: uint8, uint16 (16-bit PNG / TIFF) or float32 (float TIFF).

    The first frame of animated / multi-page files is read; EXIF orientation is applied.
    Raises ImageError with a one-line message for anything unreadable, incomplete or too big.
    """
    if dtype not in (None, "float32", np.float32):
        raise ValueError(f"read_image: dtype must be 'float32' or None, not {dtype!r}")
    name, data = _read_bytes(src, max_file_bytes(max_pixels))
    if not data:
        raise ImageError(f"{name}: file is empty (0 bytes); re-export or re-download it")
    if data.startswith(_PNG_SIGNATURE):
        _check_png_chunks(data, name)

    with warnings.catch_warnings():
        # Our own max_pixels check below is what protects us, not Pillow's warning.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            im = None
        except Image.DecompressionBombError as e:
            found = re.search(r"\d+", str(e))
            size = f"{found.group()} pixels" if found else "too many pixels"
            raise ImageError(
                f"{name}: image has {size}, over the limit of {max_pixels} pixels and over Pillow's "
                f"safety limit; downscale it first",
                "only if you trust this file, pass a larger max_pixels to read_image and raise "
                "PIL.Image.MAX_IMAGE_PIXELS") from None
        except MemoryError:
            raise
        except Exception as e:
            raise ImageError(
                f"{name}: corrupted image header ({reason(e, 200)}); re-export or re-download it") from None

        if im is None:
            header = _tiff_header(data) if data.startswith(_TIFF_SIGNATURES) else None
            if header is None and data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
                raise ImageError(f"{name}: HEIC / AVIF photo is truncated or corrupted; re-export or re-download it")
            if header is None:
                raise ImageError(f"{name}: not an image file ({_guess_kind(data)}); "
                                 "expected PNG, JPEG, HEIC, TIFF, ...")
            width, height, orientation = header
            _check_size(name, width, height, max_pixels)
            image = _decode_cv2(data, name, height, width, orientation, gray_alpha=False)
        else:
            _check_size(name, im.width, im.height, max_pixels)
            rawmode = _rawmode(im)
            deep = "16" in rawmode or "32" in rawmode
            if im.format in ("PNG", "TIFF") and deep and not im.mode.startswith(("I", "F")):
                # More than 8 bits per color channel, which Pillow would reduce to 8 bits: use OpenCV.
                gray_alpha = rawmode.startswith("LA")
                image = _decode_cv2(data, name, im.height, im.width, _orientation(im), gray_alpha)
            else:
                image = _decode_pillow(im, data, name)

    if image.dtype == np.float32 and not np.isfinite(image).all():
        raise ImageError(f"{name}: float image contains NaN or Inf values; fix the data that produced it")
    return image if dtype is None else to_float(image)


def read_icc_profile(src) -> bytes | None:
    """The ICC colour profile embedded in an image file (a path or bytes), or None (none, or not readable).

    Phones tag their photos Display P3 (iPhones, many Androids) and raw converters Adobe RGB or ProPhoto: the pixels
    mean other colours than sRGB's. `write_image(..., icc_profile=)` puts it back on a result, so that a viewer shows
    the result in the photo's own colours; the pixels themselves are never converted."""
    try:
        with Image.open(io.BytesIO(bytes(src)) if isinstance(src, (bytes, bytearray, memoryview)) else src) as im:
            profile = im.info.get("icc_profile")
    except Exception:  # not an image, damaged: read_image says what is wrong with it
        return None
    return bytes(profile) if profile else None


def _read_bytes(src, limit: int) -> tuple[str, bytes]:
    """(name for messages, at most limit + 1 bytes of content) from a path, bytes or file-like."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return "<bytes>", bytes(src)
    if isinstance(src, (str, os.PathLike)):
        name = os.fspath(src)
        if os.path.isdir(name):
            raise ImageError(f"{name}: is a directory, not an image file")
        try:
            with open(name, "rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            raise ImageError(f"{name}: file not found; check the path") from None
        except OSError as e:
            raise ImageError(f"{name}: cannot read file ({e.strerror or e}); check its permissions") from None
    elif hasattr(src, "read"):
        name = str(getattr(src, "name", "<stream>"))
        data = src.read(limit + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(f"{name}: stream gave {type(data).__name__}, not bytes; open it in binary mode ('rb')")
    else:
        raise TypeError(f"read_image: expected a path, bytes or binary file object, not {type(src).__name__}")
    if len(data) > limit:
        raise ImageError(
            f"{name}: file is over {limit} bytes, larger than any image within the pixel limit; "
            f"downscale or compress it first",
            "pass a larger max_pixels to read_image only if you trust this file")
    return name, bytes(data)


def max_file_bytes(max_pixels: int) -> int:
    """The largest file `read_image` reads for an image of up to `max_pixels`: a generous bound, 32 bytes per
    pixel (4 x float64) plus 64 MiB for metadata."""
    return int(max_pixels) * 32 + (64 << 20)


def _check_size(name: str, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: image header says {width}x{height} pixels; the file is corrupted")
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
            f"pixels; downscale it first",
            "only if you trust this file, pass a larger max_pixels to read_image")


def _check_png_chunks(data: bytes, name: str) -> None:
    """Verify every PNG chunk is complete with a correct CRC, up to IEND (Pillow skips IDAT CRCs)."""
    view = memoryview(data)
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(view[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            break
        chunk_type = bytes(view[pos + 4 : pos + 8]).decode("latin-1")
        if zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
            raise ImageError(
                f"{name}: PNG chunk {chunk_type!r} fails its CRC check; the file is corrupted, "
                "re-export or re-download it"
            )
        if chunk_type == "IEND":
            return
        pos = end
    raise ImageError(f"{name}: PNG file is truncated (no IEND chunk); re-export or re-download it")


def _tiff_header(data: bytes):
    """(width, height, orientation) from the first TIFF directory, or None if unreadable."""
    try:
        fp = io.BytesIO(data)
        ifd = TiffImagePlugin.ImageFileDirectory_v2(fp.read(8))
        fp.seek(ifd.next)
        ifd.load(fp)
        return int(ifd[256]), int(ifd[257]), int(ifd.get(_EXIF_ORIENTATION, 1))
    except Exception:
        return None


def _guess_kind(data: bytes) -> str:
    """A short guess of what a non-image file is, for the error message."""
    if data[4:8] == b"ftyp":  # an ISO media file that is not a HEIF photo (read_image checks those first)
        return "it looks like a video (MP4 / MOV); save one frame as PNG or JPEG"
    head = data[:512].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "it looks like a PDF document"
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "it looks like an HTML page, perhaps an error page saved instead of the image"
    if head.startswith(b"<?xml") or b"<svg" in head:
        return "it looks like SVG/XML text; rasterize it to PNG first"
    try:  # an incremental decoder does not fail on a character cut at the end
        text = codecs.getincrementaldecoder("utf-8")().decode(data[:4096])
    except UnicodeDecodeError:
        text = "\0"
    return "it looks like a text file" if "\0" not in text else "unrecognized or corrupted format"


def _rawmode(im: Image.Image) -> str:
    """Pillow's raw pixel layout of the file, e.g. 'RGB;16B' for a 16-bit RGB PNG ('' if unknown)."""
    args = im.tile[0].args if im.tile else None
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return rawmode if isinstance(rawmode, str) else ""


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:
        return 1


def _decode_pillow(im: Image.Image, data: bytes, name: str) -> np.ndarray:
    """Pixels of a Pillow image (first frame) as HxWxC uint8 / uint16 / float32."""
    try:
        im.load()
        # Only if someone set LOAD_TRUNCATED_IMAGES (we never do), Pillow accepts a cut JPEG.
        if im.format == "JPEG" and ImageFile.LOAD_TRUNCATED_IMAGES and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
            raise OSError("JPEG has no end-of-image marker")
        im = ImageOps.exif_transpose(im)
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode in _CONVERT:
            im = im.convert(_CONVERT[im.mode])
        mode = im.mode
        image = np.asarray(im)
    except MemoryError:
        raise
    except Exception as e:
        raise ImageError(f"{name}: image data is truncated or corrupted ({reason(e, 200)}); "
                         "re-export or re-download it") from None

    if mode.startswith("I"):  # I;16, I;16B, I;16S, I (32-bit): keep only what fits in uint16
        if image.dtype.kind not in "iu" or (image.size and (image.min() < 0 or image.max() > 65535)):
            raise ImageError(
                f"{name}: {mode} integer image has values outside 0..65535; "
                f"save it as 16-bit PNG/TIFF or float TIFF instead"
            )
        image = image.astype(np.uint16)
    elif mode not in _ARRAY_MODES:
        raise ImageError(f"{name}: unsupported color mode {mode!r}; convert it to RGB or grayscale PNG")
    elif mode == "F":
        image = image.astype(np.float32)
    return _hwc(image)


def _decode_cv2(data: bytes, name: str, height: int, width: int, orientation: int, gray_alpha: bool) -> np.ndarray:
    """Decode 16-bit / float PNG or TIFF with OpenCV into HxWxC uint8 / uint16 / float32, RGB order."""
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise ImageError(f"{name}: image data is corrupted (OpenCV: {reason(e, 200)}); "
                         "re-export or re-download it") from None
    if image is None or image.shape[:2] != (height, width):
        raise ImageError(f"{name}: image data is truncated or corrupted; re-export or re-download it")
    if image.dtype == np.float64 or image.dtype == np.float16:
        with np.errstate(over="ignore"):
            image = image.astype(np.float32)  # out-of-range values become Inf and are refused
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        raise ImageError(f"{name}: unsupported sample type {image.dtype}; save it as 8/16-bit or float32")
    image = _hwc(image)
    if image.shape[2] == 3:
        image = image[..., ::-1]  # BGR -> RGB
    elif image.shape[2] == 4:
        image = image[..., [2, 1, 0, 3]]  # BGRA -> RGBA
        if gray_alpha:
            image = image[..., [0, 3]]  # OpenCV expands gray+alpha to 4 channels
    if orientation in _ORIENT:
        image = _ORIENT[orientation](image)
    return np.ascontiguousarray(image)


def _hwc(image: np.ndarray) -> np.ndarray:
    return image[:, :, None] if image.ndim == 2 else image


def reason(e: BaseException, limit: int | None = None, typed: bool = False) -> str:
    """The first line of `e`'s message for a one-line error, cut to `limit` characters (None: whole);
    `typed`: led by the exception's type ("ConnectError: ..."). The type alone when the message is empty."""
    lines = str(e).strip().splitlines()
    if not lines:
        return type(e).__name__
    return (f"{type(e).__name__}: {lines[0]}" if typed else lines[0])[:limit]


# --------------------------------------------------------------------------- writing


def write_image(path, image, *, bit_depth=None, fast=False, icc_profile: bytes | None = None) -> pathlib.Path:
    """Write image to path as a lossless PNG, atomically; return the Path written.

    image: HxW or HxWxC (C = 1, 2, 3, 4) array, uint8, uint16, or float in [0, 1]
        (clipped). 16-bit gray+alpha is written as 16-bit RGBA (OpenCV and Pillow
        cannot write 16-bit gray+alpha).
    bit_depth: 8 or 16; None -> 8 for uint8, 16 for uint16 and float input.
    fast: deflate level 1 and no fsync, for transient views (the Learn tab's four 512² images: level 6
        and fsync cost 0.3 s, a third of its budget); the file is as lossless, only larger.
    icc_profile: an ICC colour profile to embed (`read_icc_profile` of the image it was made from); None: none
        (viewers take the pixels as sRGB).
    The file is written to a temporary name in the same folder, synced, then renamed,
    so path never holds a partial file. Raises ImageError if path is not .png or
    cannot be written.
    """
    path = pathlib.Path(path)
    if path.suffix.lower() != ".png":
        raise ImageError(f"{path}: write_image only writes lossless PNG; use a file name ending in .png")
    image = _check_array(image)
    if bit_depth is None:
        bit_depth = 8 if image.dtype == np.uint8 else 16
    if bit_depth not in (8, 16):
        raise ValueError(f"write_image: bit_depth must be 8, 16 or None, not {bit_depth!r}")
    target = np.uint8 if bit_depth == 8 else np.uint16
    if image.dtype != target:
        image = from_float(to_float(image), target)
    data = _encode_png(image, fast)
    if icc_profile:
        data = _with_iccp(data, icc_profile)
    try:
        write_atomic(path, data, sync=not fast)
    except OSError as e:
        raise ImageError(f"{path}: cannot write file ({e.strerror or e}); check that the folder exists, "
                         f"is writable and has free space") from None
    return path


def _check_array(image) -> np.ndarray:
    """Validate an image array and return it as HxWxC."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"write_image: expected an HxW or HxWxC image with C in 1..4, got shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16) and not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"write_image: unsupported dtype {image.dtype}; use uint8, uint16 or float32")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError("write_image: image contains NaN or Inf values")
    return image


def _encode_png(image: np.ndarray, fast: bool = False) -> bytes:
    """HxWxC uint8 (Pillow) or uint16 (OpenCV) -> PNG file bytes; `fast`: at deflate level 1, else each library's
    default (Pillow 6, OpenCV 1)."""
    channels = image.shape[2]
    if image.dtype == np.uint8:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image[:, :, 0] if channels == 1 else image)).save(
            buffer, format="PNG", compress_level=1 if fast else 6)
        return buffer.getvalue()
    if channels == 2:
        image = image[..., [0, 0, 0, 1]]  # 16-bit gray+alpha -> RGBA
    elif channels == 3:
        image = image[..., ::-1]  # RGB -> BGR
    elif channels == 4:
        image = image[..., [2, 1, 0, 3]]  # RGBA -> BGRA
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image), [cv2.IMWRITE_PNG_COMPRESSION, 1] if fast else [])
    if not ok:
        raise ImageError("could not encode the image as PNG")
    return encoded.tobytes()


def _with_iccp(png: bytes, profile: bytes) -> bytes:
    """`png` with an iCCP chunk (the embedded ICC profile, deflated) right after its IHDR, where PNG puts it."""
    body = b"icc\x00\x00" + zlib.compress(bytes(profile))  # name, its NUL, compression method 0 (deflate)
    chunk = len(body).to_bytes(4, "big") + b"iCCP" + body + zlib.crc32(b"iCCP" + body).to_bytes(4, "big")
    end = len(_PNG_SIGNATURE) + 8 + 13 + 4  # the IHDR chunk: length, type, 13 bytes of data, CRC
    return png[:end] + chunk + png[end:]


def write_atomic(path, data: bytes, sync: bool = True) -> None:
    """Write `data` to a temporary file next to `path`, fsync it (unless not `sync`), then rename it over `path`.

    `path` never holds a partial file; on any failure the temporary file is removed and the
    error (OSError for the file system's) raised. The one atomic writer: images, checkpoints
    and training state all go through it.
    """
    path = pathlib.Path(path)
    folder = path.parent
    tmp = folder / f".{uuid.uuid4().hex[:16]}.n2n-tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not possible on every platform
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
