"""Running the Landmarker over many images or video frames: decoding overlapped with inference.

Decoding and face detection happen in a thread pool (OpenCV and torch release the GIL) a few batches
ahead, overlapping the landmark networks, which take the decoded images in batches. A file that fails is reported as a result with `error`, and the
run goes on.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from fflm.imageio import ImageError, is_video_path, list_images, read_image, video_frames
from fflm.outputs import ImageResult
from fflm.pipeline import Landmarker


@dataclass
class Item:
    """One image to process: its label, frame number (videos) and how to get its pixels."""

    image: str
    load: Callable[[], np.ndarray]
    frame: int | None = None
    name: str | None = None  # output stem (relative to a batch's folder, so sub-folders don't collide)


def folder_items(folder: str | Path, recursive: bool = False) -> list[Item]:
    folder = Path(folder)
    return [Item(str(p), (lambda p=p: read_image(p)), name=str(p.relative_to(folder).with_suffix("")))
            for p in list_images(folder, recursive)]


def file_items(paths: Iterable[str | Path]) -> list[Item]:
    return [Item(str(p), (lambda p=p: read_image(p))) for p in paths]


def video_items(path: str | Path) -> Iterator[Item]:
    """Frames in order; each item holds its already-decoded frame (video decoding is sequential)."""
    for n, frame in video_frames(path):
        yield Item(str(path), (lambda f=frame: f), n)


def source_items(source: str | Path, recursive: bool = False) -> Iterable[Item]:
    """A folder of images, a video file, or a single image file."""
    source = Path(source)
    if source.is_dir():
        return folder_items(source, recursive)
    if is_video_path(source):
        return video_items(source)
    return file_items([source])


Visit = Callable[[ImageResult, np.ndarray], None]


def run(landmarker: Landmarker, items: Iterable[Item], boxes: dict[str, list] | None = None, batch_size: int = 8,
        workers: int = 2, visit: Visit | None = None) -> Iterator[ImageResult]:
    """Yield one ImageResult per item, in order; `visit(result, pixels)` sees each decoded image once its
    faces are known (for overlays), so pixels need not be decoded twice or kept."""
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="fflm-decode")
    pending: deque[tuple[Item, Future]] = deque()
    it = iter(items)

    def fill() -> None:
        while len(pending) < 2 * batch_size + workers:
            try:
                item = next(it)
            except StopIteration:
                return
            pending.append((item, pool.submit(_prepare, landmarker, item, boxes)))

    try:
        fill()
        while pending:
            batch = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
            fill()
            yield from _process(landmarker, batch, visit)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _prepare(landmarker: Landmarker, item: Item, boxes: dict[str, list] | None) -> tuple[np.ndarray, list]:
    """Decode one item and find its faces (in a worker thread)."""
    image = item.load()
    given = None if boxes is None else boxes.get(Path(item.image).name)
    return image, landmarker.detections(image, given, label=item.image)


def _process(landmarker: Landmarker, batch: list[tuple[Item, Future]], visit: Visit | None) -> list[ImageResult]:
    results: list[ImageResult] = []
    arrays, dets, slots = [], [], []
    for item, fut in batch:
        result = ImageResult(item.image, frame=item.frame, name=item.name)
        results.append(result)
        try:
            image, d = fut.result()
            result.height, result.width = image.shape[:2]
        except (ImageError, ValueError, OSError) as e:
            result.error = str(e)
            continue
        arrays.append(image)
        dets.append(d)
        slots.append(result)
    if arrays:
        for result, image, faces in zip(slots, arrays, landmarker.landmarks(arrays, dets)):
            result.faces = faces
            if visit is not None:
                try:
                    visit(result, image)
                except (ValueError, OSError) as e:  # e.g. an overlay that cannot be written: that image fails
                    result.error = str(e)
    return results

