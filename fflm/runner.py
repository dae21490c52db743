"""Running the Landmarker over many images or video frames, several batches at a time.

Each worker thread takes a whole batch through the pipeline (decode, detect, landmark networks on the batch,
overlay), and the caller's torch threads are shared out among the workers. On a CPU this beats one batched
pipeline on all threads: the small convolutions scale poorly across threads, and decoding, detection and
Python overhead then run in parallel too (torch, OpenCV and NumPy release the GIL). Results come back in input
order. A file that fails is reported as a result with `error`, and the run goes on.
"""

from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sized

import numpy as np
import torch

from fflm.imageio import (STDIN, ImageError, is_video_path, list_images, read_image, read_stdin_image, video_fps,
                          video_frames)
from fflm.outputs import ImageResult
from fflm.pipeline import Landmarker


@dataclass
class Item:
    """One image to process: its label, frame number (videos) and how to get its pixels."""

    image: str
    load: Callable[[], np.ndarray]
    frame: int | None = None
    name: str | None = None  # output stem (relative to a batch's folder, so sub-folders don't collide)
    time_ms: float | None = None  # a video frame's time


def folder_items(folder: str | Path, recursive: bool = False, exclude: str | Path | None = None) -> list[Item]:
    """The folder's images (see `list_images`; nothing under `exclude`), each named by its path relative to
    the folder without the extension, or with it where two files differ only there (`x.jpg`, `x.png`), so
    that no two inputs share a .pts or overlay name."""
    folder = Path(folder)
    paths = list_images(folder, recursive, exclude)
    stems = [str(p.relative_to(folder).with_suffix("")) for p in paths]
    clash = {s for s in stems if stems.count(s) > 1}
    return [Item(str(p), (lambda p=p: read_image(p)), name=str(p.relative_to(folder)) if s in clash else s)
            for p, s in zip(paths, stems)]


def file_items(paths: Iterable[str | Path]) -> list[Item]:
    """Image files; `-` is an image read from stdin (named `stdin` in output file names)."""
    return [Item(STDIN, read_stdin_image, name="stdin") if str(p) == STDIN else Item(str(p), (lambda p=p: read_image(p)))
            for p in paths]


def video_items(path: str | Path) -> Iterator[Item]:
    """Frames in order; each item holds its already-decoded frame (video decoding is sequential), or, for a
    frame that cannot be decoded, the error that its result reports; every item carries its frame's time."""
    fps = video_fps(path)
    for n, frame in video_frames(path):
        yield Item(str(path), (lambda f=frame: f) if not isinstance(frame, ImageError) else _raise(frame), n,
                   time_ms=n * 1000.0 / fps if fps else None)


def _raise(e: Exception) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        raise e

    return load


def source_items(source: str | Path, recursive: bool = False, exclude: str | Path | None = None) -> Iterable[Item]:
    """A folder of images, a video file, or a single image file."""
    source = Path(source)
    if source.is_dir():
        return folder_items(source, recursive, exclude)
    if is_video_path(source):
        return video_items(source)
    return file_items([source])


Visit = Callable[[ImageResult, np.ndarray], None]

PIXEL_BUDGET = 64_000_000  # decoded pixels a worker holds before it runs the networks (bounds memory on 8K folders)


def run(landmarker: Landmarker, items: Iterable[Item], boxes: dict[str, list] | None = None, batch_size: int = 8,
        workers: int = 2, visit: Visit | None = None) -> Iterator[ImageResult]:
    """Yield one ImageResult per item, in order; `visit(result, pixels)` sees each decoded image once its
    faces are known (for overlays; in a worker thread, in any order), so pixels need not be decoded twice or kept.

    While the run lasts, torch's (process-wide) thread count is the caller's divided among the workers."""
    if isinstance(items, Sized):  # a short list: smaller batches so every worker gets one, fewer workers if fewer
        n = max(1, len(items))
        batch_size = max(1, min(batch_size, -(-n // max(1, workers))))
        workers = min(workers, -(-n // batch_size))
    workers = max(1, min(workers, 64))
    threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="fflm-batch")
    pending: deque[Future] = deque()
    batches = _batches(items, batch_size)
    per = max(1, threads // workers)
    try:
        for batch in batches:
            while len(pending) > workers:  # one batch queued beyond the running ones keeps every worker busy
                yield from pending.popleft().result()
            pending.append(pool.submit(_process, landmarker, batch, boxes, visit, per))
        while pending:
            yield from pending.popleft().result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        torch.set_num_threads(threads)


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _process(landmarker: Landmarker, batch: list[Item], boxes: dict[str, list] | None,
             visit: Visit | None, threads: int) -> list[ImageResult]:
    """One batch through the whole pipeline (in a worker thread, on `threads` torch threads: OpenMP keeps the
    count per calling thread). The networks run whenever the decoded pixels reach PIXEL_BUDGET, and at the end."""
    torch.set_num_threads(threads)
    results: list[ImageResult] = []
    held: list[tuple[ImageResult, np.ndarray, list]] = []
    for item in batch:
        result = ImageResult(item.image, frame=item.frame, name=item.name, time_ms=item.time_ms)
        results.append(result)
        try:
            image = item.load()
            given = None if boxes is None else boxes.get(Path(item.image).name)
            dets = landmarker.detections(image, given, label=item.image)
        except (ImageError, ValueError, OSError) as e:
            result.error = str(e)
            continue
        result.height, result.width = image.shape[:2]
        held.append((result, image, dets))
        if sum(im.size // 3 for _, im, _ in held) >= PIXEL_BUDGET:
            _landmarks(landmarker, held, visit)
            held = []
    _landmarks(landmarker, held, visit)
    return results


def _landmarks(landmarker: Landmarker, held: list[tuple[ImageResult, np.ndarray, list]], visit: Visit | None) -> None:
    if not held:
        return
    faces = landmarker.landmarks([im for _, im, _ in held], [d for _, _, d in held])
    for (result, image, _), f in zip(held, faces):
        result.faces = f
        if visit is not None:
            try:
                visit(result, image)
            except (ValueError, OSError) as e:  # an overlay that cannot be written: the landmarks are kept
                result.overlay_error = str(e)
