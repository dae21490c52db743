"""Decoding images to upright 8-bit RGB, reduced-size decoding, and video frames.

Everything downstream sees `uint8 [H, W, 3]` RGB with EXIF orientation applied. 16-bit, grey, RGBA
(alpha dropped) and CMYK inputs are converted; OpenCV decodes, Pillow is the fallback for what it can't.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


class ImageError(Exception):
    """An image that cannot be read: missing, not an image, truncated or of an unsupported kind."""


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
        a = (a >> 8).astype(np.uint8)
    elif a.dtype.kind == "f":
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        raise ImageError(f"unsupported pixel type {a.dtype}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a)


def read_image(path: str | Path, reduce: int = 1) -> np.ndarray:
    """Decode a file to upright uint8 RGB [H, W, 3]; `reduce` 2, 4 or 8 decodes at 1/reduce size where the
    decoder supports it (JPEG's DCT scaling), which is how big photos feed the detector cheaply."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"no such file: {path}")
    if path.is_dir():
        raise ImageError(f"is a directory, not an image: {path}")
    if not is_image_path(path):
        raise ImageError(f"unsupported file type {path.suffix or '(none)'}: {path}")
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
    if reduce not in flags:
        raise ValueError("reduce must be 1, 2, 4 or 8")
    if reduce == 1:
        rgb = _decode_in_place(path)
        if rgb is not None:
            return rgb
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f"empty file: {path}")
    bgr = cv2.imdecode(data, flags[reduce])  # OpenCV 5 refuses truncated JPEGs rather than filling them grey
    if bgr is not None:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)  # in place: no second full-size buffer; ~20× faster than a numpy flip
    return _read_with_pillow(path, reduce)


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
    from PIL import ImageOps, UnidentifiedImageError

    Image = _pillow()
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if reduce > 1:
                im = im.reduce(reduce)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.uint32)
                return to_rgb8((arr >> 8).clip(0, 255).astype(np.uint8))
            return to_rgb8(np.asarray(im.convert("RGB")))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot decode {path}: {e}") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the upright image: from a JPEG's header and EXIF orientation, else by decoding
    (Pillow's plugins disagree on whether the size they report is already oriented)."""
    size = _jpeg_size(Path(path))
    if size is not None:
        return size
    a = read_image(path)
    return a.shape[1], a.shape[0]


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Image files in a folder (extensions case-insensitive), sorted by path."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and is_image_path(p))


def video_frames(path: str | Path):
    """Yield (frame number, RGB uint8 frame) from a video file, decoded in order by OpenCV."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageError(f"cannot open video {path}")
    try:
        n = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield n, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)
            n += 1
        if n == 0:
            raise ImageError(f"no frames could be decoded from {path}")
    finally:
        cap.release()


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
