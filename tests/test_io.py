"""Tests for n2n.io. Every test file is generated here, in tmp_path or in memory."""

import errno
import io
import os
import time
import warnings
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

import n2n.io as n2n_io
from n2n.io import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    from_float,
    read_icc_profile,
    read_image,
    to_float,
    to_uint8,
    with_alpha,
    write_image,
)

RNG = np.random.default_rng(1234)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- helpers


def rand_u8(*shape):
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def rand_u16(*shape):
    return RNG.integers(0, 65536, size=shape, dtype=np.uint16)


def pil_bytes(im, fmt, **kwargs):
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def cv2_bytes(ext, image):
    ok, encoded = cv2.imencode(ext, image)
    assert ok
    return encoded.tobytes()


def png_chunk(chunk_type, data):
    return len(data).to_bytes(4, "big") + chunk_type + data + zlib.crc32(chunk_type + data).to_bytes(4, "big")


def crafted_png(width, height, bit_depth, color_type, raw=b""):
    """A PNG built chunk by chunk; raw is the unfiltered scanline data (filter bytes added)."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([bit_depth, color_type, 0, 0, 0])
    row = len(raw) // height if height and raw else 0
    filtered = b"".join(b"\x00" + raw[i * row : (i + 1) * row] for i in range(height)) if raw else b""
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(filtered))
        + png_chunk(b"IEND", b"")
    )


def find_chunk(data, chunk_type):
    """Offset of a chunk's length field."""
    return data.index(chunk_type) - 4


def write_file(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_error(src, **kwargs):
    with pytest.raises(ImageError) as info:
        read_image(src, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message.lower()


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_uint8_round_trip(tmp_path, channels):
    image = rand_u8(5, 7, channels)
    path = write_image(tmp_path / "a.png", image)
    assert path == tmp_path / "a.png"
    native = read_image(path, dtype=None)
    assert native.dtype == np.uint8 and native.shape == (5, 7, channels)
    np.testing.assert_array_equal(native, image)
    as_float = read_image(path)
    assert as_float.dtype == np.float32 and 0 <= as_float.min() and as_float.max() <= 1
    np.testing.assert_allclose(as_float, image / 255.0, atol=1e-6)


def test_uint8_gray_2d_input_reads_back_3d(tmp_path):
    image = rand_u8(6, 4)
    out = read_image(write_image(tmp_path / "g.png", image), dtype=None)
    assert out.shape == (6, 4, 1)
    np.testing.assert_array_equal(out[:, :, 0], image)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_uint16_round_trip_exact(tmp_path, channels):
    image = rand_u16(5, 7, channels)
    image[0, 0] = 65535
    image[0, 1] = 256  # values above 255 must survive exactly
    path = write_image(tmp_path / "a.png", image)
    out = read_image(path, dtype=None)
    assert out.dtype == np.uint16 and out.shape == (5, 7, channels)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_allclose(read_image(path), image / 65535.0, atol=1e-6)


def test_16bit_gray_alpha_written_as_rgba(tmp_path):
    image = rand_u16(3, 4, 2)
    out = read_image(write_image(tmp_path / "la.png", image), dtype=None)
    assert out.shape == (3, 4, 4)
    np.testing.assert_array_equal(out, image[..., [0, 0, 0, 1]])


def test_16bit_rgb_channel_order_matches_other_decoders(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 1000, 30000, 65535
    # Written by us -> OpenCV sees BGR.
    path = write_image(tmp_path / "ours.png", rgb)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[0, 0].tolist() == [65535, 30000, 1000]
    # Written by OpenCV (BGR) -> we return RGB, at 16 bits (Pillow alone would give 8 bits).
    theirs = write_file(tmp_path, "theirs.png", cv2_bytes(".png", rgb[..., ::-1].copy()))
    out = read_image(theirs, dtype=None)
    assert out.dtype == np.uint16 and out[0, 0].tolist() == [1000, 30000, 65535]


def test_8bit_rgb_channel_order_matches_pillow(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200
    path = write_image(tmp_path / "red.png", rgb)
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.getpixel((0, 0)) == (200, 0, 0)


@pytest.mark.parametrize("ext", [".png", ".tiff"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_files_from_opencv(tmp_path, ext, channels):
    image = rand_u16(4, 5, channels)
    path = write_file(tmp_path, "x" + ext, cv2_bytes(ext, image))
    out = read_image(path, dtype=None)
    assert out.dtype == np.uint16
    expected = image if channels == 1 else image[..., [2, 1, 0, 3][:channels]]
    np.testing.assert_array_equal(out, expected)


def test_16bit_gray_alpha_png_crafted():
    values = np.array([[[0, 65535], [300, 1]], [[40000, 2], [65534, 777]]], dtype=">u2")
    data = crafted_png(2, 2, 16, 4, values.tobytes())
    out = read_image(data, dtype=None)
    assert out.dtype == np.uint16 and out.shape == (2, 2, 2)
    np.testing.assert_array_equal(out, values.astype(np.uint16))


def test_pillow_16bit_gray_png():
    image = rand_u16(3, 5)
    out = read_image(pil_bytes(Image.fromarray(image), "PNG"), dtype=None)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out[:, :, 0], image)


def test_float_write_goes_to_16bit(tmp_path):
    image = RNG.random((4, 6, 3), dtype=np.float32)
    path = write_image(tmp_path / "f.png", image)
    assert read_image(path, dtype=None).dtype == np.uint16
    np.testing.assert_allclose(read_image(path), image, atol=0.5 / 65535 + 1e-7)


def test_float_write_clips(tmp_path):
    image = np.array([[-0.5, 0.0, 0.5, 1.0, 7.0]], np.float32)
    out = read_image(write_image(tmp_path / "c.png", image), dtype=None)[0, :, 0]
    assert out.tolist() == [0, 0, 32768, 65535, 65535]


def test_bit_depth_forced(tmp_path):
    u8 = np.array([[0, 1, 128, 255]], np.uint8)
    out16 = read_image(write_image(tmp_path / "a.png", u8, bit_depth=16), dtype=None)
    assert out16.dtype == np.uint16 and out16[0, :, 0].tolist() == [0, 257, 128 * 257, 65535]
    u16 = np.array([[0, 128, 129, 65535]], np.uint16)
    out8 = read_image(write_image(tmp_path / "b.png", u16, bit_depth=8), dtype=None)
    assert out8.dtype == np.uint8 and out8[0, :, 0].tolist() == [0, 0, 1, 255]
    f = np.array([[0.0, 0.5, 1.0]], np.float32)
    assert read_image(write_image(tmp_path / "c.png", f, bit_depth=8), dtype=None)[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 3), (3, 4000), (4000, 3, 3)])
def test_tiny_and_thin_images(tmp_path, shape):
    image = rand_u8(*shape)
    out = read_image(write_image(tmp_path / "t.png", image), dtype=None)
    np.testing.assert_array_equal(out, image.reshape(out.shape))
    assert out.shape[:2] == shape[:2]


def test_jpeg_reads_uint8_rgb():
    data = pil_bytes(Image.new("RGB", (8, 6), (250, 10, 10)), "JPEG", quality=95)
    out = read_image(data, dtype=None)
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3)
    assert out[..., 0].min() > 200 and out[..., 1:].max() < 50


# ----------------------------------------------------------------------------- float TIFF


@pytest.mark.parametrize("channels", [1, 3])
def test_float_tiff(tmp_path, channels):
    image = RNG.random((4, 5, channels), dtype=np.float32)
    path = tmp_path / "f.tiff"
    assert cv2.imwrite(str(path), image)
    out = read_image(path, dtype=None)
    assert out.dtype == np.float32
    expected = image if channels == 1 else image[..., ::-1]
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(read_image(path), expected)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_tiff_nan_inf_refused(tmp_path, channels, bad):
    image = RNG.random((4, 5, channels), dtype=np.float32)
    image[1, 2, 0] = bad
    path = tmp_path / "bad.tiff"
    assert cv2.imwrite(str(path), image)
    message = read_error(path)
    assert "nan" in message and "inf" in message and "bad.tiff" in message


def test_float_tiff_values_outside_unit_range_kept(tmp_path):
    image = np.array([[-1.0, 0.5, 3.0]], np.float32)
    path = tmp_path / "hdr.tiff"
    assert cv2.imwrite(str(path), image)
    np.testing.assert_array_equal(read_image(path)[0, :, 0], image[0])


# ----------------------------------------------------------------------------- Pillow modes


def test_mode_1_bilevel():
    im = Image.new("1", (4, 2))
    im.putpixel((1, 0), 1)
    out = read_image(pil_bytes(im, "PNG"), dtype=None)
    assert out.dtype == np.uint8 and out.shape == (2, 4, 1)
    assert set(np.unique(out).tolist()) == {0, 255} and out[0, 1, 0] == 255


def test_palette_without_transparency():
    im = Image.new("P", (3, 2))
    im.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    im.putpixel((2, 1), 1)
    out = read_image(pil_bytes(im, "PNG"), dtype=None)
    assert out.shape == (2, 3, 3)
    assert out[0, 0].tolist() == [10, 20, 30] and out[1, 2].tolist() == [200, 100, 50]


def test_palette_with_transparency():
    im = Image.new("P", (3, 2))
    im.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    im.putpixel((2, 1), 1)
    out = read_image(pil_bytes(im, "PNG", transparency=0), dtype=None)
    assert out.shape == (2, 3, 4)
    assert out[0, 0, 3] == 0 and out[1, 2].tolist() == [200, 100, 50, 255]


def test_cmyk_jpeg_becomes_rgb():
    data = pil_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)  # red
    out = read_image(data, dtype=None)
    assert out.shape == (8, 8, 3)
    assert out[..., 0].min() > 200 and out[..., 1:].max() < 60


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (4, 3), color) for color in [(255, 0, 0), (0, 0, 255)]]
    data = pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames == 2
    out = read_image(data, dtype=None)
    assert out.shape[:2] == (3, 4) and out[..., :3].reshape(-1, 3).tolist()[0] == [255, 0, 0]


def test_apng_first_frame():
    frames = [Image.new("RGB", (4, 3), color) for color in [(0, 255, 0), (0, 0, 255)]]
    data = pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames == 2
    out = read_image(data, dtype=None)
    assert (out.reshape(-1, 3) == [0, 255, 0]).all()


def test_multipage_tiff_first_page():
    pages = [Image.new("L", (5, 2), value) for value in (7, 99)]
    data = pil_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    out = read_image(data, dtype=None)
    assert out.shape == (2, 5, 1) and (out == 7).all()


def test_mode_I_within_16_bits_becomes_uint16():
    values = np.array([[0, 255, 65535]], np.int32)
    out = read_image(pil_bytes(Image.fromarray(values), "TIFF"), dtype=None)
    assert out.dtype == np.uint16 and out[0, :, 0].tolist() == [0, 255, 65535]


@pytest.mark.parametrize("bad_value", [65536, -1])
def test_mode_I_out_of_range_refused(tmp_path, bad_value):
    path = tmp_path / "deep.tiff"
    Image.fromarray(np.array([[0, bad_value]], np.int32)).save(path)
    message = read_error(path)
    assert "65535" in message and "deep.tiff" in message


def test_mode_F_gray_float_tiff():
    values = np.array([[0.25, 0.5]], np.float32)
    out = read_image(pil_bytes(Image.fromarray(values), "TIFF"), dtype=None)
    assert out.dtype == np.float32 and out[0, :, 0].tolist() == [0.25, 0.5]


# ----------------------------------------------------------------------------- EXIF orientation


def test_exif_orientation_6_jpeg():
    # Stored 40 wide x 20 high, white marker in the top-left corner. Orientation 6 means
    # "rotate 90 degrees clockwise to display": result is 20 wide x 40 high, marker top-right.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:8, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    data = pil_bytes(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    out = read_image(data, dtype=None)
    assert out.shape == (40, 20, 3)
    assert out[:8, -8:].mean() > 200  # marker now top-right
    assert out[:8, :8].mean() < 50 and out[-8:, -8:].mean() < 50


def test_heic_photo_reads_rotated_like_a_jpeg():
    """HEIC, the phones' own format (pillow-heif): decoded at 8 bits with its EXIF rotation applied once."""
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:16, :16] = (255, 180, 90)  # a marker in the top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display: 32 wide × 64 high, marker top-right
    data = pil_bytes(Image.fromarray(stored), "HEIF", quality=95, exif=exif.tobytes())
    assert data[4:12] == b"ftypheic"
    out = read_image(data, dtype=None)
    assert out.shape == (64, 32, 3) and out.dtype == np.uint8
    assert np.abs(out[2:14, -14:-2].astype(int) - (255, 180, 90)).max() < 12  # the marker, in place
    assert out[-16:, :16].max() < 12
    assert "heic / avif photo is truncated or corrupted" in read_error(data[: len(data) // 2])
    video = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64)
    assert "looks like a video" in read_error(video)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_an_icc_profile_is_read_and_written_back(tmp_path, dtype):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = rand_u8(24, 40, 3) if dtype == np.uint8 else rand_u16(24, 40, 3)
    path = write_image(tmp_path / "tagged.png", image, icc_profile=profile)
    assert read_icc_profile(path) == profile and np.array_equal(read_image(path, dtype=None), image)
    with Image.open(path) as im:
        im.verify()  # every chunk's CRC, the iCCP one included
    assert read_icc_profile(pil_bytes(Image.fromarray(rand_u8(8, 8, 3)), "JPEG", icc_profile=profile)) == profile
    assert read_icc_profile(pil_bytes(Image.fromarray(rand_u8(8, 8, 3)), "HEIF", icc_profile=profile)) == profile
    assert read_icc_profile(write_image(tmp_path / "plain.png", image)) is None
    assert read_icc_profile(b"not an image") is None


def test_heic_over_the_pixel_limit_refused_from_its_header():
    data = pil_bytes(Image.fromarray(np.zeros((200, 300, 3), np.uint8)), "HEIF", quality=50)
    message = read_error(data, max_pixels=50_000)
    assert "300x200" in message and "60000" in message and "max_pixels" in message


@pytest.mark.parametrize("orientation", range(1, 9))
def test_numpy_orientation_matches_pillow(orientation):
    """A 16-bit PNG is decoded by OpenCV and turned by n2n's own array code: as Pillow turns the 8-bit image."""
    stored = rand_u8(3, 5, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im = Image.fromarray(stored)
    im.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(im)).astype(np.uint16) * 257
    data = cv2_bytes(".png", stored[..., ::-1].astype(np.uint16) * 257)
    at = find_chunk(data, b"IDAT")
    data = data[:at] + png_chunk(b"eXIf", exif.tobytes()[6:]) + data[at:]  # PNG eXIf: no "Exif\0\0"
    out = read_image(data, dtype=None)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, expected)


def test_exif_orientation_applied_to_16bit_png():
    stored = rand_u16(3, 5, 3)
    data = cv2_bytes(".png", stored[..., ::-1].copy())
    exif = Image.Exif()
    exif[0x0112] = 6
    at = find_chunk(data, b"IDAT")
    data = data[:at] + png_chunk(b"eXIf", exif.tobytes()[6:]) + data[at:]  # PNG eXIf: no "Exif\0\0"
    out = read_image(data, dtype=None)
    assert out.dtype == np.uint16 and out.shape == (5, 3, 3)
    np.testing.assert_array_equal(out, np.rot90(stored, -1))


# ----------------------------------------------------------------------------- sources


def test_bytes_bytearray_and_file_like():
    image = rand_u8(3, 4, 3)
    data = pil_bytes(Image.fromarray(image), "PNG")
    for src in (data, bytearray(data), io.BytesIO(data)):
        np.testing.assert_array_equal(read_image(src, dtype=None), image)


def test_open_binary_file_object(tmp_path):
    image = rand_u8(3, 4)
    path = write_image(tmp_path / "f.png", image)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(read_image(f, dtype=None)[:, :, 0], image)


def test_text_mode_stream_refused(tmp_path):
    path = write_file(tmp_path, "t.png", b"hello")
    with open(path, "r") as f:
        assert "binary" in read_error(f)


def test_bad_dtype_argument():
    with pytest.raises(ValueError, match="dtype"):
        read_image(b"x", dtype="uint8")


def test_str_path_and_pathlike(tmp_path):
    image = rand_u8(2, 2, 3)
    path = write_image(str(tmp_path / "s.png"), image)
    np.testing.assert_array_equal(read_image(str(path), dtype=None), image)
    np.testing.assert_array_equal(read_image(path, dtype=None), image)


@pytest.mark.parametrize(
    "name",
    ["with space.png", "ünïcødé 画像.png", "-leading-dash.png", "x" * 196 + ".png", "dots.in.name.PNG"],
)
def test_odd_file_names(tmp_path, name):
    image = rand_u8(2, 3, 3)
    path = write_image(tmp_path / name, image)
    assert path.name == name and path.exists()
    np.testing.assert_array_equal(read_image(path, dtype=None), image)
    assert sorted(os.listdir(tmp_path)) == [name]


def test_no_file_handles_leak(tmp_path):
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    good = write_image(tmp_path / "good.png", rand_u8(4, 4, 3))
    data = good.read_bytes()
    bad = write_file(tmp_path, "bad.png", data[: len(data) // 2])
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        read_image(good)
        with pytest.raises(ImageError):
            read_image(bad)
    assert len(os.listdir("/proc/self/fd")) == before


# ----------------------------------------------------------------------------- refused files


def test_file_not_found(tmp_path):
    message = read_error(tmp_path / "missing.png")
    assert "not found" in message and "missing.png" in message


def test_directory(tmp_path):
    message = read_error(tmp_path)
    assert "directory" in message and str(tmp_path).lower() in message


def test_empty_file(tmp_path):
    message = read_error(write_file(tmp_path, "empty.png", b""))
    assert "empty" in message and "empty.png" in message
    assert "empty" in read_error(b"")


@pytest.mark.parametrize(
    "content, word",
    [
        (b"just some notes\nnot a picture\n", "text"),
        (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "html"),
        (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "pdf"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "svg"),
        (b'<svg width="10" height="10"><rect width="10" height="10"/></svg>', "svg"),
        (bytes(range(256)) * 4, "unrecognized"),
        (b"a" + "é".encode() * 3000, "text"),  # multi-byte text cut mid-character at the sniff limit
    ],
)
def test_non_images_named_png(tmp_path, content, word):
    message = read_error(write_file(tmp_path, "fake.png", content))
    assert "not an image" in message and word in message and "fake.png" in message


@pytest.mark.parametrize("allow_truncated", [False, True])
def test_truncated_png(tmp_path, monkeypatch, allow_truncated):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", allow_truncated)
    data = pil_bytes(Image.fromarray(rand_u8(32, 32, 3)), "PNG")
    for cut in (len(data) // 2, len(data) - 1, len(data) - 12):
        message = read_error(write_file(tmp_path, "cut.png", data[:cut]))
        assert "truncated" in message and "cut.png" in message


def test_png_without_signature_tail_refused():
    data = pil_bytes(Image.fromarray(rand_u8(4, 4)), "PNG")
    assert "not an image" in read_error(data[:6])


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg(tmp_path, progressive):
    data = pil_bytes(Image.fromarray(rand_u8(64, 64, 3)), "JPEG", quality=90, progressive=progressive)
    message = read_error(write_file(tmp_path, "cut.jpg", data[: len(data) // 2]))
    assert "truncated" in message and "cut.jpg" in message


def test_truncated_jpeg_refused_even_if_pillow_allows_truncation(monkeypatch):
    data = pil_bytes(Image.fromarray(rand_u8(64, 64, 3)), "JPEG", quality=90)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert "truncated" in read_error(data[: len(data) // 2])
    assert read_image(data).shape == (64, 64, 3)  # the whole file is still fine


@pytest.mark.parametrize("chunk", [b"IHDR", b"IDAT", b"IEND"])
def test_png_bad_crc(tmp_path, chunk):
    data = bytearray(pil_bytes(Image.fromarray(rand_u8(8, 8, 3)), "PNG"))
    at = find_chunk(data, chunk)
    length = int.from_bytes(data[at : at + 4], "big")
    data[at + 8 + length] ^= 0xFF  # first CRC byte
    message = read_error(write_file(tmp_path, "crc.png", bytes(data)))
    assert "crc" in message and chunk.decode().lower() in message and "corrupted" in message


def test_truncated_16bit_png():
    data = cv2_bytes(".png", rand_u16(16, 16, 3))
    assert "truncated" in read_error(data[: len(data) // 2])


def test_png_corrupted_idat_with_valid_crc():
    data = bytearray(pil_bytes(Image.fromarray(rand_u8(16, 16, 3)), "PNG"))
    at = find_chunk(data, b"IDAT")
    length = int.from_bytes(data[at : at + 4], "big")
    body = bytearray(data[at + 8 : at + 8 + length])
    body[2:10] = b"\xff" * 8  # garbage in the zlib stream
    fixed = png_chunk(b"IDAT", bytes(body))
    data = bytes(data[:at]) + fixed + bytes(data[at + 12 + length :])
    assert "corrupted" in read_error(data)


def test_png_zero_width_refused():
    message = read_error(crafted_png(0, 5, 8, 2))
    assert "not an image" in message or "corrupted" in message


def test_huge_header_refused_quickly_without_allocating():
    data = crafted_png(40000, 40000, 8, 2)  # tiny file, header claims 1.6 gigapixels
    assert len(data) < 100
    start = time.perf_counter()
    message = read_error(data)
    assert time.perf_counter() - start < 0.2
    assert "1600000000" in message and "max_pixels" in message and str(DEFAULT_MAX_PIXELS) in message


def test_huge_header_refused_even_without_pillow_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # as some training scripts do
    start = time.perf_counter()
    message = read_error(crafted_png(40000, 40000, 8, 2))
    assert time.perf_counter() - start < 0.2
    assert "40000x40000" in message and "max_pixels" in message


def test_over_our_limit_under_pillows():
    message = read_error(crafted_png(8000, 6000, 8, 2))  # 48 MP: Pillow allows it, we do not
    assert "8000x6000" in message and "48000000" in message and "40000000" in message
    assert "max_pixels" in message
    with pytest.raises(ImageError) as err:  # the message for people, without the advice for programs
        read_image(crafted_png(8000, 6000, 8, 2))
    assert err.value.user_message.endswith("downscale it first") and "max_pixels" not in err.value.user_message


def test_pillow_bomb_warning_does_not_leak():
    data = crafted_png(10000, 10000, 8, 0)  # 100 MP: Pillow would warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "10000x10000" in read_error(data)


def test_real_image_over_small_limit(tmp_path):
    path = write_image(tmp_path / "ten.png", rand_u8(10, 10, 3))
    message = read_error(path, max_pixels=99)
    assert "10x10" in message and "99" in message and "max_pixels" in message and "ten.png" in message
    assert read_image(path, max_pixels=100).shape == (10, 10, 3)


def test_float_tiff_over_limit_checked_before_decoding(tmp_path):
    path = tmp_path / "big.tiff"
    assert cv2.imwrite(str(path), RNG.random((10, 10, 3), dtype=np.float32))
    assert "10x10" in read_error(path, max_pixels=50)


def test_file_much_larger_than_limit_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(n2n_io, "max_file_bytes", lambda max_pixels: 100)
    path = write_file(tmp_path, "video.png", b"\0" * 200)
    for src in (path, io.BytesIO(path.read_bytes())):
        message = read_error(src)
        assert "over 100 bytes" in message and "max_pixels" in message


def test_file_size_bound_is_generous():
    # A 4-channel float32 TIFF without compression must fit under the bound.
    assert n2n_io.max_file_bytes(DEFAULT_MAX_PIXELS) > DEFAULT_MAX_PIXELS * 16


def test_binary_junk_is_not_called_text():
    message = read_error(b"\0" * 200)
    assert "not an image" in message and "text" not in message


# ----------------------------------------------------------------------------- writing


def test_write_requires_png_suffix(tmp_path):
    for name in ("a.jpg", "a.tiff", "noext"):
        with pytest.raises(ImageError, match=r"\.png"):
            write_image(tmp_path / name, rand_u8(2, 2))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "image, word",
    [
        (np.zeros((2, 2, 5), np.uint8), "shape"),
        (np.zeros((2, 2, 2, 2), np.uint8), "shape"),
        (np.zeros((0, 3), np.uint8), "shape"),
        (np.zeros((2, 2), np.int64), "dtype"),
        (np.zeros((2, 2), bool), "dtype"),
        (np.full((2, 2), np.nan, np.float32), "nan"),
    ],
)
def test_write_bad_arrays(tmp_path, image, word):
    with pytest.raises(ValueError) as info:
        write_image(tmp_path / "bad.png", image)
    assert word in str(info.value).lower()
    assert os.listdir(tmp_path) == []


def test_write_bad_bit_depth(tmp_path):
    with pytest.raises(ValueError, match="bit_depth"):
        write_image(tmp_path / "a.png", rand_u8(2, 2), bit_depth=12)


def test_write_leaves_no_temp_files_and_overwrites(tmp_path):
    first = rand_u8(3, 3, 3)
    second = rand_u8(4, 5, 3)
    write_image(tmp_path / "out.png", first)
    write_image(tmp_path / "out.png", second)
    assert os.listdir(tmp_path) == ["out.png"]
    np.testing.assert_array_equal(read_image(tmp_path / "out.png", dtype=None), second)


def test_written_file_is_readable_by_others(tmp_path):
    path = write_image(tmp_path / "perm.png", rand_u8(2, 2))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_missing_folder(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "a.png"
    with pytest.raises(ImageError) as info:
        write_image(target, rand_u8(2, 2))
    message = str(info.value)
    assert str(target) in message and "cannot write" in message
    assert not (tmp_path / "no").exists()


def test_write_parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageError, match="cannot write"):
        write_image(tmp_path / "file" / "a.png", rand_u8(2, 2))


def test_write_over_directory_refused(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageError, match="cannot write"):
        write_image(tmp_path / "d.png", rand_u8(2, 2))
    assert os.listdir(tmp_path) == ["d.png"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_write_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ImageError) as info:
            write_image(folder / "a.png", rand_u8(2, 2))
        assert "cannot write" in str(info.value) and "a.png" in str(info.value)
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o700)


def test_write_disk_full_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    old = rand_u8(3, 3)
    path = write_image(tmp_path / "keep.png", old)

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(ImageError) as info:
        write_image(path, rand_u8(5, 5))
    message = str(info.value)
    assert "keep.png" in message and os.strerror(errno.ENOSPC).lower() in message.lower()
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["keep.png"]
    np.testing.assert_array_equal(read_image(path, dtype=None)[:, :, 0], old)


def test_write_interrupted_leaves_no_temp(tmp_path, monkeypatch):
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "a.png", rand_u8(2, 2))
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- conversions


def test_to_float():
    assert to_float(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    assert to_float(np.array([0, 65535], np.uint16)).tolist() == [0.0, 1.0]
    f = np.array([0.25], np.float32)
    assert to_float(f) is f
    assert to_float(np.array([0.5])).dtype == np.float32
    with pytest.raises(ValueError, match="dtype"):
        to_float(np.array([1], np.int32))


def test_from_float():
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0], np.float32)
    assert from_float(x, np.uint8).tolist() == [0, 0, 128, 255, 255]
    assert from_float(x, "uint16").tolist() == [0, 0, 32768, 65535, 65535]
    out = from_float(x, np.float32)
    assert out.dtype == np.float32 and out.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="NaN"):
        from_float(np.array([np.nan]), np.uint8)
    with pytest.raises(ValueError, match="dtype"):
        from_float(x, np.int32)


def test_to_uint8_is_from_float_to_8_bits():
    """The one 8-bit conversion (PSNR's, the baselines'): uint8 untouched, uint16 to the nearest level."""
    same = np.arange(256, dtype=np.uint8)
    assert to_uint8(same) is same
    levels = np.arange(65536, dtype=np.uint16)
    np.testing.assert_array_equal(to_uint8(levels), np.round(levels / 257.0).astype(np.uint8))
    assert to_uint8(np.array([-1.0, 0.5, 2.0], np.float32)).tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(np.array([np.nan], np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_to_from_float_exact_round_trip(dtype):
    values = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)
    np.testing.assert_array_equal(from_float(to_float(values), dtype), values)


# --------------------------------------------------------------------------- alpha pass-through


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_with_alpha_puts_a_colour_result_in_the_images_form(dtype, channels):
    image = from_float(RNG.random((5, 7, channels), dtype=np.float32), dtype)
    colour_channels = 3 if channels >= 3 else 1
    result = RNG.random((5, 7, colour_channels), dtype=np.float32) * 1.4 - 0.2  # a float result, out of range too
    out = with_alpha(result, image)
    assert out.dtype == dtype and out.shape == image.shape
    assert np.array_equal(out[..., :colour_channels], from_float(result, dtype))  # clipped, rounded
    if channels in (2, 4):
        assert np.array_equal(out[..., -1], image[..., -1]), "alpha passes through untouched"
        kept = with_alpha(out, image)  # a result that holds its alpha already keeps it
        assert np.array_equal(kept, out)
    wrong = np.zeros((5, 7, 3 if channels == 2 else 2), np.float32)  # neither the colour's channels nor all
    with pytest.raises(ValueError, match="channels"):
        with_alpha(wrong, image)
