"""Decoding images to upright 8-bit RGB, reduced-size decoding, and video frames.

Everything downstream sees `uint8 [H, W, 3]` RGB with EXIF orientation applied. 16-bit (10- and 12-bit
data in it by its maximum), grey, RGBA (alpha dropped) and CMYK inputs are converted; OpenCV decodes, Pillow
is the fallback for what it can't. Files are decoded by their content, whatever their name says.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from fflm.errors import ImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm",
                              ".pgm", ".pnm"})
STDIN = "-"
OWN_OUTPUT = ".fflm"  # overlays are `<stem>.fflm.jpg`: a folder listing never takes them for inputs
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def to_rgb8(array: np.ndarray) -> np.ndarray:
    """Any decoded array (grey, RGB, RGBA; uint8, uint16 or float in 0..1) to contiguous uint8 RGB."""
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"expected an H×W, H×W×3 or H×W×4 image, got shape {a.shape}")
    if a.dtype == np.uint16:
        a = (a >> (_bit_depth(a) - 8)).astype(np.uint8)
    elif a.dtype.kind == "f":
        a = (np.clip(a * (1.0 / _float_range(a)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        raise ImageError(f"unsupported pixel type {a.dtype}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a)


def _bit_depth(a: np.ndarray) -> int:
    """The bits a 16-bit image's data uses: the least of 8, 10, 12, 14, 16 that holds its maximum (a 12-bit
    camera frame in a 16-bit PNG peaks at 4095 and would be near-black taken as 16-bit)."""
    top = int(a.max(initial=0))
    return next(b for b in (8, 10, 12, 14, 16) if top < 1 << b)


def _float_range(a: np.ndarray) -> float:
    """1 for float pixels in 0..1 (overshoot up to 2 is clipped), 255 for 0..255; anything else is refused."""
    if not np.isfinite(a).all():
        raise ImageError("float image with NaN or infinite values")
    top = float(a.max(initial=0.0))
    if top <= 2.0:
        return 1.0
    if top <= 256.0:
        return 255.0
    raise ImageError(f"float image with values up to {top:g}: expected 0..1 or 0..255")


def read_image(path: str | Path, reduce: int = 1) -> np.ndarray:
    """Decode a file to upright uint8 RGB [H, W, 3]; `reduce` 2, 4 or 8 decodes at 1/reduce size where the
    decoder supports it (JPEG's DCT scaling), which is how big photos feed the detector cheaply."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"no such file: {path}")
    if path.is_dir():
        raise ImageError(f"is a directory, not an image: {path}")
    if reduce not in _FLAGS:
        raise ValueError("reduce must be 1, 2, 4 or 8")
    if is_video_path(path):
        raise ImageError(f"{path} is a video, not an image")
    if reduce == 1:
        rgb = _decode_in_place(path)
        if rgb is not None:
            return rgb
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f"empty file: {path}")
    return decode_bytes(data, str(path), reduce, lambda: _read_with_pillow(path, reduce))


_FLAGS = {1: cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
          8: cv2.IMREAD_REDUCED_COLOR_8}


def decode_bytes(data: np.ndarray, label: str, reduce: int = 1, fallback=None) -> np.ndarray:
    """An encoded image (bytes as uint8) to upright RGB uint8, by its content; `fallback()` (Pillow) when
    OpenCV cannot, else ImageError naming `label`. Reduced decoding (JPEG's DCT scaling) is for 8-bit data:
    a deeper image is decoded whole, converted by its bit depth and then shrunk."""
    if reduce > 1 and _is_16bit_png(data):
        whole = decode_bytes(data, label, 1, fallback)
        h, w = whole.shape[:2]
        return cv2.resize(whole, (-(-w // reduce), -(-h // reduce)), interpolation=cv2.INTER_AREA)
    bgr = cv2.imdecode(data, _FLAGS[reduce])  # OpenCV 5 refuses truncated JPEGs rather than filling them grey
    if bgr is None:
        if fallback is not None:
            return fallback()
        raise ImageError(f"cannot decode {label}: not an image, or a damaged one")
    if bgr.dtype == np.uint8:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)  # in place: no second full-size buffer; ~20× faster than a numpy flip
    return to_rgb8(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def decode_file_bytes(data: bytes, label: str) -> np.ndarray:
    """An image file's bytes (read elsewhere, e.g. by Ray Data) decoded as `read_image` decodes the file, with
    the same errors, naming `label`."""
    import io

    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise ImageError(f"empty file: {label}")
    return decode_bytes(buf, label, fallback=lambda: _pillow_decode(io.BytesIO(data), label, 1))


def _is_16bit_png(data: np.ndarray) -> bool:
    """Whether the bytes are a PNG with 16-bit samples (IHDR's bit depth, byte 24)."""
    return data.size > 24 and data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and int(data[24]) == 16


def read_stdin_image() -> np.ndarray:
    """The image piped to stdin (`fflm detect -`), decoded by its content."""
    import sys

    data = np.frombuffer(sys.stdin.buffer.read(), dtype=np.uint8)
    if data.size == 0:
        raise ImageError("stdin: no data (pipe an image in, e.g. fflm detect - < photo.jpg)")
    return decode_bytes(data, "stdin", fallback=lambda: _pillow_bytes(data.tobytes()))


def _decode_in_place(path: Path) -> np.ndarray | None:
    """A complete JPEG decoded by OpenCV straight into an array of its upright size, or None to take the
    regular path. Why: imread/imdecode decode into a C++ buffer that the Python binding then copies, so peak
    memory is twice the image (290 MB for an 8K photo); imread(path, dst) writes into `dst` instead.
    That overload reports no failure, hence the guards: PIL must read a JPEG header of that size, the file
    must end with the EOI marker (OpenCV refuses a JPEG cut short, which this call would fill grey), and the
    last row must have been written (a zeroed array's untouched pages also cost no memory)."""
    size = _jpeg_size(path)
    if size is None or not _ends_with_eoi(path):
        return None
    dst = np.zeros((size[1], size[0], 3), np.uint8)
    try:
        out = cv2.imread(str(path), dst, cv2.IMREAD_COLOR_RGB)
    except cv2.error:  # a size other than PIL's
        return None
    if out is not dst or not out[-1].any():  # not written (or a black last row: let the regular path decide)
        return None
    return out


def _ends_with_eoi(path: Path) -> bool:
    """Whether the file's last two bytes are JPEG's end-of-image marker (a file cut short lacks it)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        if f.tell() < 4:
            return False
        f.seek(-2, 2)
        return f.read(2) == b"\xff\xd9"


def _jpeg_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an upright JPEG from its header and EXIF orientation, None for other files."""
    from PIL import UnidentifiedImageError

    try:
        with _pillow().open(path) as im:
            if im.format == "JPEG":
                w, h = im.size
                return (h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        pass
    return None


def _pillow():
    """PIL.Image with its decompression-bomb guard (89 MP warning, 179 MP error) off: fflm exists for very
    large photos, and the guard would refuse a 12K frame that a user asked us to read."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    return Image


def _read_with_pillow(path: Path, reduce: int) -> np.ndarray:
    return _pillow_decode(path, str(path), reduce)


def _pillow_bytes(data: bytes) -> np.ndarray:
    import io

    return _pillow_decode(io.BytesIO(data), "stdin", 1)


def _pillow_decode(source, label: str, reduce: int) -> np.ndarray:  # noqa: ANN001 - a path or a file object
    from PIL import ImageOps, UnidentifiedImageError

    Image = _pillow()
    try:
        with Image.open(source) as im:
            im = ImageOps.exif_transpose(im)
            if reduce > 1:
                im = im.reduce(reduce)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.uint32)
                return to_rgb8(arr.clip(0, 65535).astype(np.uint16))
            return to_rgb8(np.asarray(im.convert("RGB")))
    except UnidentifiedImageError:
        raise ImageError(f"cannot decode {label}: not an image, or a damaged one") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot decode {label}: {str(e).splitlines()[0] if str(e) else 'a damaged image'}") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the upright image: from a JPEG's header and EXIF orientation, else by decoding
    (Pillow's plugins disagree on whether the size they report is already oriented)."""
    size = _jpeg_size(Path(path))
    if size is not None:
        return size
    a = read_image(path)
    return a.shape[1], a.shape[0]


def list_images(folder: str | Path, recursive: bool = False, exclude: str | Path | None = None) -> list[Path]:
    """Image files in a folder (extensions case-insensitive), sorted by path; never fflm's own overlays
    (`*.fflm.<ext>`) nor anything under `exclude` when that lies inside the folder (an overlay folder)."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    skip = Path(os.path.realpath(exclude)) if exclude is not None else None
    if skip is not None and Path(os.path.realpath(folder)) not in skip.parents:
        skip = None  # only a folder inside the listed one is left out

    def wanted(p: Path) -> bool:
        if not (p.is_file() and is_image_path(p)) or Path(p.stem).suffix.lower() == OWN_OUTPUT:
            return False
        return skip is None or skip not in Path(os.path.realpath(p)).parents

    return sorted(p for p in folder.glob(pattern) if wanted(p))


MAX_BAD_FRAMES_IN_A_ROW = 25  # failed reads in a row after which a video counts as ended


def video_frames(path: str | Path) -> Iterator[tuple[int, np.ndarray | ImageError]]:
    """Yield (frame number, RGB uint8 frame) from a video file, decoded in order by OpenCV; a frame that
    cannot be decoded yields an ImageError in its place and the frames after it still come. Each read takes
    one packet, so the n-th read is frame n. Failed reads count as damaged frames when a later frame decodes
    or when they lie within the container's frame count; after the last frame they are the end."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageError(f"cannot open video {path}: not a video, or a damaged one")
    count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    try:
        n, good, bad = 0, 0, []
        while len(bad) < MAX_BAD_FRAMES_IN_A_ROW:
            ok, bgr = cap.read()
            if not ok:
                bad.append(n)
            else:
                yield from ((k, _bad_frame(path, k)) for k in bad)
                bad = []
                good += 1
                yield n, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)
            n += 1
            if bad and count and n >= count:
                break
        if good == 0:
            raise ImageError(f"no frames could be decoded from {path}")
        yield from ((k, _bad_frame(path, k)) for k in bad if k < count)
    finally:
        cap.release()


def _bad_frame(path: str | Path, frame: int) -> ImageError:
    return ImageError(f"{path} frame {frame}: cannot be decoded (damaged or missing data)")


def video_frame_count(path: str | Path) -> int:
    """Frame count from the container (0 when unknown)."""
    cap = cv2.VideoCapture(str(path))
    try:
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))) if cap.isOpened() else 0
    finally:
        cap.release()


def video_fps(path: str | Path) -> float:
    """Frame rate from the container (0.0 when unknown): frame n is at n / fps seconds."""
    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
        return fps if np.isfinite(fps) and 0 < fps < 10_000 else 0.0
    finally:
        cap.release()
