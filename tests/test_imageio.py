"""fflm.imageio: decoding to upright uint8 RGB, its conversions and errors, folder listing and video frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import fflm.imageio as imageio
from fflm.imageio import (
    ImageError,
    image_size,
    is_image_path,
    is_video_path,
    list_images,
    read_image,
    to_rgb8,
    video_frame_count,
    video_frames,
)

RED = (255, 0, 0)


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_cv2(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


@pytest.fixture
def no_opencv_decode(monkeypatch):
    """Make OpenCV fail to decode anything, so read_image takes its Pillow fallback."""
    monkeypatch.setattr(imageio.cv2, "imdecode", lambda *a, **k: None)
    monkeypatch.setattr(imageio, "_decode_in_place", lambda *a, **k: None)


# --- decoding ------------------------------------------------------------------------------------------------


def test_png_round_trip_is_exact_and_rgb_ordered(tmp_path):
    rgb = _rgb()
    rgb[0, 0] = RED
    out = read_image(_write_cv2(tmp_path / "a.png", rgb))
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)
    assert tuple(out[0, 0]) == RED  # RGB, not OpenCV's BGR


def test_jpeg_decodes_close_to_the_original(tmp_path):
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :12] = (200, 40, 40)
    rgb[:, 12:] = (30, 60, 220)
    path = tmp_path / "a.jpg"
    assert cv2.imwrite(str(path), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = read_image(path)
    assert out.shape == (16, 24, 3)
    assert np.abs(out.astype(int)[4:12, 2:8] - (200, 40, 40)).max() <= 12
    assert np.abs(out.astype(int)[4:12, 16:22] - (30, 60, 220)).max() <= 12


def test_string_path_accepted(tmp_path):
    rgb = _rgb()
    np.testing.assert_array_equal(read_image(str(_write_cv2(tmp_path / "a.png", rgb))), rgb)


def _sixteen_bit() -> np.ndarray:
    """A 16-bit BGR image whose low bytes would change the result if the value were rounded, not shifted."""
    bgr = np.zeros((6, 8, 3), np.uint16)
    bgr[..., 0] = 0x12FF  # blue: >> 8 is 0x12 (rounding would give 0x13)
    bgr[..., 1] = 0xFF00
    bgr[..., 2] = 0x0080  # red: >> 8 is 0
    bgr[3, 4] = (0xFFFF, 0x8001, 0x7FFF)
    return bgr


@pytest.mark.parametrize("fallback", [False, True], ids=["opencv", "pillow"])
def test_16bit_png_becomes_uint8_high_byte(tmp_path, request, fallback):
    if fallback:
        request.getfixturevalue("no_opencv_decode")
    bgr = _sixteen_bit()
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), bgr)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3)
    np.testing.assert_array_equal(out, (bgr[:, :, ::-1] >> 8).astype(np.uint8))


@pytest.mark.parametrize("fallback", [False, True], ids=["opencv", "pillow"])
def test_16bit_grey_png(tmp_path, request, fallback):
    if fallback:
        request.getfixturevalue("no_opencv_decode")
    grey = np.arange(6 * 8, dtype=np.uint16).reshape(6, 8) * 1361 + 0xFF  # spans 0x00FF .. 0xFFxx
    path = tmp_path / "grey16.png"
    assert cv2.imwrite(str(path), grey)
    out = read_image(path)
    expected = (grey >> 8).astype(np.uint8)
    assert out.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], expected)


@pytest.mark.parametrize("fallback", [False, True], ids=["opencv", "pillow"])
def test_greyscale_png_gives_three_equal_channels(tmp_path, request, fallback):
    if fallback:
        request.getfixturevalue("no_opencv_decode")
    grey = np.random.default_rng(1).integers(0, 256, (10, 14), dtype=np.uint8)
    path = tmp_path / "grey.png"
    assert cv2.imwrite(str(path), grey)
    out = read_image(path)
    assert out.shape == (10, 14, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


@pytest.mark.parametrize("fallback", [False, True], ids=["opencv", "pillow"])
def test_rgba_png_drops_alpha(tmp_path, request, fallback):
    if fallback:
        request.getfixturevalue("no_opencv_decode")
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., :3] = _rgb(8, 10)
    rgba[..., 3] = np.arange(10, dtype=np.uint8) * 25  # varying alpha, incl. fully transparent: must not matter
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = read_image(path)
    assert out.shape == (8, 10, 3)
    np.testing.assert_array_equal(out, rgba[..., :3])


@pytest.mark.parametrize("fallback", [False, True], ids=["opencv", "pillow"])
@pytest.mark.parametrize("cmyk, rgb", [((0, 255, 255, 0), (255, 0, 0)), ((255, 0, 0, 0), (0, 255, 255)),
                                       ((0, 0, 0, 128), (127, 127, 127))], ids=["red", "cyan", "grey"])
def test_cmyk_jpeg_decodes_to_the_right_colour(tmp_path, request, fallback, cmyk, rgb):
    if fallback:
        request.getfixturevalue("no_opencv_decode")
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 12), cmyk).save(path, quality=95)
    out = read_image(path)
    assert out.shape == (12, 16, 3)
    assert np.abs(out.astype(int)[6, 8] - rgb).max() <= 12, out[6, 8]


def _oriented_jpeg(path: Path, orientation: int) -> None:
    """A 40×20 (w×h) JPEG with a red 8×8 block at the stored top-left corner and the given EXIF orientation."""
    a = np.zeros((20, 40, 3), np.uint8)
    a[:8, :8] = RED
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, exif=exif, quality=95)


def _red_centre(img: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero((img[:, :, 0] > 128) & (img[:, :, 1] < 100))
    return float(xs.mean()), float(ys.mean())


# where the stored top-left block lands (x, y) on the upright 20×40 image, for each rotating orientation
ORIENTED_CORNER = {6: (15.5, 3.5), 8: (3.5, 35.5), 5: (3.5, 3.5), 7: (15.5, 35.5)}


@pytest.mark.parametrize("fallback", [False, True], ids=["opencv", "pillow"])
@pytest.mark.parametrize("orientation", [6, 8, 5, 7])
def test_exif_orientation_is_applied(tmp_path, request, fallback, orientation):
    if fallback:
        request.getfixturevalue("no_opencv_decode")
    path = tmp_path / "rot.jpg"
    _oriented_jpeg(path, orientation)
    out = read_image(path)
    assert out.shape == (40, 20, 3)  # stored 40 wide × 20 high, shown 20 wide × 40 high
    x, y = _red_centre(out)
    ex, ey = ORIENTED_CORNER[orientation]
    assert abs(x - ex) < 0.75 and abs(y - ey) < 0.75, (x, y)
    assert image_size(path) == (20, 40)


def test_exif_orientation_with_reduce(tmp_path):
    path = tmp_path / "rot.jpg"
    _oriented_jpeg(path, 6)
    out = read_image(path, reduce=2)
    assert out.shape == (20, 10, 3)
    x, y = _red_centre(out)
    assert abs(x - 7.5) < 1.0 and abs(y - 1.5) < 1.0


def test_image_size_matches_decoded_size(tmp_path):
    _write_cv2(tmp_path / "a.png", _rgb(24, 32))
    assert image_size(tmp_path / "a.png") == (32, 24)
    _oriented_jpeg(tmp_path / "plain.jpg", 1)
    assert image_size(tmp_path / "plain.jpg") == (40, 20)
    assert read_image(tmp_path / "plain.jpg").shape == (20, 40, 3)


def test_image_size_agrees_with_read_image_for_oriented_tiff(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:8, :8] = RED
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rot.tif"
    im.save(path, exif=exif)
    h, w = read_image(path).shape[:2]
    assert image_size(path) == (w, h)


def test_read_image_reduce_halves_a_jpeg(tmp_path):
    path = _write_cv2(tmp_path / "big.jpg", _rgb(64, 96))
    assert read_image(path).shape == (64, 96, 3)
    assert read_image(path, reduce=2).shape == (32, 48, 3)
    assert read_image(path, reduce=4).shape == (16, 24, 3)


def test_read_image_reduce_in_the_pillow_fallback(tmp_path, no_opencv_decode):
    path = _write_cv2(tmp_path / "big.jpg", _rgb(64, 96))
    assert read_image(path, reduce=2).shape == (32, 48, 3)


def test_read_image_bad_reduce(tmp_path):
    path = _write_cv2(tmp_path / "a.png", _rgb())
    with pytest.raises(ValueError):
        read_image(path, reduce=3)


# --- errors --------------------------------------------------------------------------------------------------


def _imdecode_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("orientation", [1, 3])
def test_full_size_jpeg_is_decoded_in_place_exactly_as_imdecode(tmp_path, orientation):
    path = tmp_path / "a.jpg"
    im = Image.fromarray(_rgb(30, 40, seed=orientation))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, exif=exif, quality=90)
    fast = imageio._decode_in_place(path)
    assert fast is not None and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, _imdecode_rgb(path))
    np.testing.assert_array_equal(read_image(path), fast)


def test_in_place_decode_declines_what_it_cannot_check(tmp_path):
    """Cases where imread(path, dst) would fail silently or raise go the regular way, with the same pixels."""
    png = _write_cv2(tmp_path / "a.png", _rgb())
    assert imageio._decode_in_place(png) is None  # not a JPEG
    rotated = tmp_path / "rot.jpg"
    _oriented_jpeg(rotated, 6)  # a transpose: OpenCV wants the stored shape
    assert imageio._decode_in_place(rotated) is None
    np.testing.assert_array_equal(read_image(rotated), _imdecode_rgb(rotated))
    black = _rgb(32, 32)
    black[-16:] = 0  # a whole block row, so that the last row decodes to exact zeros
    dark = _write_cv2(tmp_path / "dark.jpg", black)  # a written black last row looks like an unwritten one
    assert imageio._decode_in_place(dark) is None
    np.testing.assert_array_equal(read_image(dark), _imdecode_rgb(dark))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(_write_cv2(tmp_path / "whole.jpg", _rgb(64, 64)).read_bytes()[:-300])  # no end-of-image marker
    assert imageio._decode_in_place(cut) is None


def test_full_size_jpeg_decode_peaks_at_one_image(tmp_path):
    """OpenCV's imread/imdecode hold the image twice (a C++ buffer, then the numpy copy); read_image must not."""
    import subprocess
    import sys

    path = _write_cv2(tmp_path / "big.jpg", np.tile(_rgb(64, 64), (40, 60, 1)))  # 3840×2560: 28 MiB decoded
    code = ("import resource, sys; from fflm.imageio import read_image; "
            "r = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024; "
            "before = r(); a = read_image(sys.argv[1]); print((r() - before) / a.nbytes)")
    ratio = float(subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout)
    assert ratio < 1.4, ratio  # 2.0 with the plain imdecode path


def test_truncated_jpeg_raises(tmp_path):
    """libjpeg would silently fill the missing half with grey: fflm must refuse the file instead."""
    full = _write_cv2(tmp_path / "full.jpg", _rgb(64, 64))
    data = full.read_bytes()
    cut = tmp_path / "half.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="half.jpg"):
        read_image(cut)


def test_truncated_png_raises(tmp_path):
    full = _write_cv2(tmp_path / "full.png", _rgb(64, 64))
    data = full.read_bytes()
    cut = tmp_path / "half.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError):
        read_image(cut)


def _jpeg_with_trailer(path: Path, rgb: np.ndarray) -> Path:
    """A JPEG followed by 200 bytes after its end marker (as some phones append): decoded by Pillow."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]))
    path.write_bytes(buf.tobytes() + b"SEFT" + bytes(200))
    return path


def test_jpeg_with_trailing_data_decodes(tmp_path):
    rgb = _rgb(20, 24)
    out = read_image(_jpeg_with_trailer(tmp_path / "trailer.jpg", rgb))
    plain = read_image(_write_cv2(tmp_path / "plain.jpg", rgb))
    assert out.shape == (20, 24, 3)
    assert np.abs(out.astype(int) - plain).max() <= 2


def test_very_large_image_in_the_pillow_fallback(tmp_path, monkeypatch):
    """A 20×20 image stands in for a 180+ MP one by lowering Pillow's limit; the trailer makes the file go
    through Pillow (as would any file OpenCV cannot decode)."""
    path = _jpeg_with_trailer(tmp_path / "huge.jpg", _rgb(20, 20))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    try:
        out = read_image(path)
    except ImageError:
        return  # refusing the file is acceptable; any other exception type is not
    assert out.shape == (20, 20, 3)


def test_text_file_named_jpg_raises(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageError, match="notes.jpg"):
        read_image(path)


def test_empty_file_raises(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        read_image(path)


@pytest.mark.parametrize("name", ["a.jfif", "a.txt", "noext"])
def test_images_are_decoded_by_content_not_name(tmp_path, name):
    jpeg = _write_cv2(tmp_path / "a.jpg", _rgb()).read_bytes()
    (tmp_path / name).write_bytes(jpeg)
    np.testing.assert_array_equal(read_image(tmp_path / name), read_image(tmp_path / "a.jpg"))


def test_text_named_like_an_image_says_what_it_is(tmp_path):
    (tmp_path / "a.jpg").write_text("not an image at all")
    with pytest.raises(ImageError, match=r"cannot decode .*a\.jpg: not an image"):
        read_image(tmp_path / "a.jpg")


def test_jfif_is_listed_as_an_image(tmp_path):
    (tmp_path / "a.jfif").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jfif"]


def test_stdin_image(monkeypatch):
    import io
    import sys

    rgb = _rgb()
    ok, buf = cv2.imencode(".png", rgb[:, :, ::-1])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(buf.tobytes())))
    np.testing.assert_array_equal(imageio.read_stdin_image(), rgb)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with pytest.raises(ImageError, match="stdin: no data"):
        imageio.read_stdin_image()


@pytest.mark.parametrize("bits", [10, 12])
@pytest.mark.parametrize("fallback", [False, True], ids=["opencv", "pillow"])
def test_10_and_12_bit_data_in_a_16_bit_png_is_scaled_by_its_depth(tmp_path, request, bits, fallback):
    if fallback:
        request.getfixturevalue("no_opencv_decode")
    top = (1 << bits) - 1
    grey = np.linspace(0, top, 48).astype(np.uint16).reshape(6, 8)
    grey[0, 0] = top  # the camera's full scale is white, not 1/16 (12-bit) of it
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), grey)
    out = read_image(path)
    np.testing.assert_array_equal(out[:, :, 1], (grey >> (bits - 8)).astype(np.uint8))
    assert out[0, 0, 0] == 255


def test_12_bit_png_decoded_reduced_is_not_dark(tmp_path):
    grey = np.full((64, 96), 4000, np.uint16)
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), grey)
    small = read_image(path, reduce=4)
    assert small.shape == (16, 24, 3) and (small == 4000 >> 4).all()


def test_to_rgb8_float_in_0_255_is_scaled():
    a = np.array([[[0.0, 127.5, 255.0], [10.0, 300.0 - 45, 2.5]]], dtype=np.float32)
    np.testing.assert_array_equal(to_rgb8(a), [[[0, 128, 255], [10, 255, 3]]])


@pytest.mark.parametrize("bad", [1000.0, np.nan, np.inf])
def test_to_rgb8_float_out_of_any_range_is_refused(bad):
    a = np.zeros((2, 2, 3), np.float32)
    a[0, 0, 0] = bad
    with pytest.raises(ImageError, match="float image"):
        to_rgb8(a)


def test_the_api_finds_the_same_points_on_float_0_255_as_on_uint8(weights):
    from fflm.pipeline import Landmarker

    img = _rgb(64, 64)
    lm = Landmarker(weights, device="cpu", detector="none")
    a = lm.predict(img)[0].landmarks
    b = lm.predict(img.astype(np.float32))[0].landmarks
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_missing_file_raises(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_directory_raises(tmp_path):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(ImageError, match="directory"):
        read_image(folder)


def test_path_predicates():
    assert is_image_path("a/B.JPG") and is_image_path("x.tiff") and not is_image_path("x.txt")
    assert not is_image_path("noext")
    assert is_video_path("clip.MP4") and is_video_path("c.avi") and not is_video_path("c.png")


# --- to_rgb8 -------------------------------------------------------------------------------------------------


def test_to_rgb8_float_is_scaled_rounded_and_clipped():
    a = np.array([[[0.0, 0.5, 1.0], [-0.2, 1.7, 0.25]]], dtype=np.float32)
    out = to_rgb8(a)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[[0, 128, 255], [0, 255, 64]]])


def test_to_rgb8_float64_grey():
    out = to_rgb8(np.full((2, 3), 0.2, np.float64))
    assert out.shape == (2, 3, 3) and (out == 51).all()


def test_to_rgb8_bool():
    mask = np.array([[True, False], [False, True]])
    out = to_rgb8(mask)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 1], [[255, 0], [0, 255]])


def test_to_rgb8_uint16_and_channels():
    a = np.array([[[0x1234, 0xFFFF, 0x00FF, 0x8000]]], np.uint16)
    np.testing.assert_array_equal(to_rgb8(a), [[[0x12, 0xFF, 0x00]]])  # alpha dropped
    grey = np.array([[7]], np.uint8)[:, :, None]
    np.testing.assert_array_equal(to_rgb8(grey), [[[7, 7, 7]]])


def test_to_rgb8_uint8_is_unchanged_and_contiguous():
    a = _rgb()
    view = a[:, ::-1]  # not contiguous
    out = to_rgb8(view)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, view)


@pytest.mark.parametrize("shape", [(4,), (4, 5, 2), (4, 5, 5), (4, 5, 3, 1), (0, 5, 3), (5, 0), (2, 2, 2, 2)])
def test_to_rgb8_bad_shapes_raise(shape):
    with pytest.raises(ImageError):
        to_rgb8(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.complex64])
def test_to_rgb8_bad_dtype_raises(dtype):
    with pytest.raises(ImageError):
        to_rgb8(np.zeros((2, 2, 3), dtype))


# --- folders -------------------------------------------------------------------------------------------------


def test_list_images_sorted_case_insensitive_and_recursive(tmp_path):
    for name in ["b.png", "A.JPG", "c.Jpeg", "d.TIFF", "notes.txt", "clip.mp4", "noext", "sub/e.png",
                 "sub/deeper/f.webp", "sub/g.txt"]:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")  # listing looks at names only
    (tmp_path / "folder.png").mkdir()  # a directory named like an image is not an image
    flat = list_images(tmp_path)
    assert [p.name for p in flat] == ["A.JPG", "b.png", "c.Jpeg", "d.TIFF"]
    deep = list_images(tmp_path, recursive=True)
    assert [p.relative_to(tmp_path).as_posix() for p in deep] == [
        "A.JPG", "b.png", "c.Jpeg", "d.TIFF", "sub/deeper/f.webp", "sub/e.png"]
    assert deep == sorted(deep)


def test_list_images_skips_fflm_overlays_and_the_excluded_folder(tmp_path):
    for name in ["a.jpg", "a.fflm.jpg", "B.FFLM.PNG", "fflm.png", "over/c.png", "sub/d.png"]:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, True, exclude=tmp_path / "over")]
    assert got == ["a.jpg", "fflm.png", "sub/d.png"]


def test_list_images_of_an_empty_folder(tmp_path):
    assert list_images(tmp_path) == [] and list_images(tmp_path, recursive=True) == []


# --- video ---------------------------------------------------------------------------------------------------


def test_video_frames_in_order(tiny_video):
    frames = list(video_frames(tiny_video))
    assert [n for n, _ in frames] == [0, 1, 2, 3, 4]
    for n, f in frames:
        assert f.shape == (48, 64, 3) and f.dtype == np.uint8 and f.flags.c_contiguous
        assert abs(float(f.mean()) - (40 * n + 20)) < 4


def test_video_frames_are_rgb(tmp_path):
    path = tmp_path / "red.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[..., 2] = 220  # BGR: red
    vw.write(frame)
    vw.release()
    [(n, f)] = list(video_frames(path))
    assert f[24, 32, 0] > 180 and f[24, 32, 2] < 60


def test_video_frame_count(tiny_video, tmp_path):
    assert video_frame_count(tiny_video) == 5
    assert video_frame_count(tmp_path / "missing.avi") == 0


def test_video_frames_of_a_non_video_raises(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_text("not a video")
    with pytest.raises(ImageError):
        list(video_frames(bad))
    with pytest.raises(ImageError):
        list(video_frames(tmp_path / "missing.mp4"))


def _garble_frames(path: Path, frames: list[int]) -> None:
    """Overwrite the given MJPG frames (each begins with a JPEG SOI marker, ~230 bytes here) with zeros."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
    for k in frames:
        data[starts[k]:starts[k] + 200] = bytes(200)
    path.write_bytes(bytes(data))


def test_a_damaged_frame_is_reported_and_later_frames_still_come(tmp_path):
    path = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(8):
        vw.write(np.full((48, 64, 3), 20 * k + 20, np.uint8))
    vw.release()
    _garble_frames(path, [2, 5, 7])
    got = list(video_frames(path))
    assert [n for n, _ in got] == list(range(8))
    bad = [n for n, f in got if isinstance(f, ImageError)]
    assert bad == [2, 5, 7]
    assert "frame 5: cannot be decoded" in str(got[5][1])
    assert abs(float(got[6][1].mean()) - 140) < 4  # the frame after a damaged one is itself, not shifted
