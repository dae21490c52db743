"""An annotated video out: every frame with its faces drawn (boxes, points, track ids), at the input's size and
frame rate, written in frame order and moved into place when complete.

OpenCV's VideoWriter rather than PyAV: OpenCV already decodes fflm's videos and draws its overlays, so writing
costs no new dependency, and its output reads back with the same frame count, size and rate. PyAV would bring
H.264 and a quality setting (the pip OpenCV wheels have neither) at the price of a second FFmpeg build in the
install. The codecs are the ones those wheels write: MPEG-4 Part 2 (`mp4v`) in .mp4/.m4v/.mov, Motion JPEG in
.avi/.mkv.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np

from fflm.errors import UsageError
from fflm.outputs import ImageResult, draw_overlay
from fflm.scheme import LandmarkScheme

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def check_video_path(path: str | Path) -> None:
    """ValueError unless fflm can write a video of this name."""
    if Path(path).suffix.lower() not in FOURCC:
        raise UsageError(f"cannot write a video as {Path(path).suffix or '(no extension)'!r}: "
                         f"use one of {', '.join(sorted(FOURCC))}")


class OverlayVideo:
    """Draws each result's faces on its frame (`visit`, from any thread) and writes the frames in order
    (`emit`, called with the results in frame order). The file appears at `path` on `close`; a frame of
    another size than the first is scaled to it (a video has one size)."""

    def __init__(self, path: str | Path, fps: float, scheme: LandmarkScheme) -> None:
        check_video_path(path)
        self.path, self.fps, self.scheme = Path(path), fps if fps > 0 else 30.0, scheme
        self.frames = 0
        self._drawn: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._tmp: str | None = None

    def visit(self, result: ImageResult, pixels: np.ndarray) -> None:
        drawn = cv2.cvtColor(draw_overlay(pixels, result.faces, self.scheme), cv2.COLOR_RGB2BGR)
        with self._lock:
            self._drawn[result.frame or 0] = drawn

    def emit(self, result: ImageResult) -> None:
        """Write the frame drawn for `result` (nothing for a frame that failed)."""
        with self._lock:
            bgr = self._drawn.pop(result.frame or 0, None)
        if bgr is None:
            return
        if self._writer is None:
            self._open(bgr.shape[1], bgr.shape[0])
        if (bgr.shape[1], bgr.shape[0]) != self._size:
            bgr = cv2.resize(bgr, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(bgr)
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent)
        os.close(fd)
        self._size = (width, height)
        self._writer = cv2.VideoWriter(self._tmp, cv2.VideoWriter_fourcc(*FOURCC[self.path.suffix.lower()]),
                                       self.fps, self._size)
        if not self._writer.isOpened():
            self.discard()
            raise OSError(f"cannot write video {self.path} ({FOURCC[self.path.suffix.lower()]} codec)")

    def close(self) -> None:
        """Finish the file and move it into place (nothing is written when no frame came)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        """Drop a half-written file (a run that failed)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is not None:
            Path(self._tmp).unlink(missing_ok=True)
