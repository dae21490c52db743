"""Annotation readers: annotated faces from a folder, a CSV file or a JSON file.

Readers return `Sample(image, points)` with 0-based points. Formats:
- a folder of images with a `.pts` file of the same stem beside each (300-W layout, any number of points), and
  optionally a `.vis` file (MERL-RAV layout: 0 visible, 1 occluded, 2 self-occluded, which is left out);
- a CSV file: fflm's own results layout (`image, …, x_0, y_0, x_1, y_1, …`; see docs/outputs.md) or
  `image,x0,y0,x1,y1,...` (image paths relative to the CSV file, else to the working directory);
- a JSON file: a list of `{"image": path, "landmarks": [[x, y], ...]}` (paths relative to the file).
CSV and JSON coordinates are 0-based pixel centres, as in fflm's outputs.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fflm.errors import AnnotationError
from fflm.imageio import is_image_path
from fflm.pts import read_pts


@dataclass(frozen=True)
class Sample:
    image: Path
    points: np.ndarray  # [N, 2], 0-based pixel centres
    source: str = field(default="", compare=False)  # where the points came from ("file.pts", "file.csv:3", ...)
    weights: np.ndarray | None = field(default=None, compare=False)  # [N] loss/score weights; 0: leave out; None: all 1


SELF_OCCLUDED = 2  # a `.vis` value: the point is hidden because the head turns away (its position is a guess)


def read_visibility(pts: Path, num_points: int) -> np.ndarray | None:
    """Weights from the `.vis` file beside a `.pts` file (one number a point: 0 visible, 1 occluded by something
    else, 2 self-occluded): 0 for self-occluded points, 1 for the rest; None without a `.vis` file."""
    vis = pts.with_suffix(".vis")
    if not vis.is_file():
        return None
    try:
        values = [int(v) for v in vis.read_text().split()]
    except ValueError:
        raise AnnotationError(f"{vis}: visibility values must be integers 0, 1 or 2") from None
    if len(values) != num_points or not set(values) <= {0, 1, SELF_OCCLUDED}:
        raise AnnotationError(f"{vis}: needs {num_points} values, each 0, 1 or 2")
    return (np.array(values) != SELF_OCCLUDED).astype(np.float64)


def read_annotations(source: str | Path, num_points: int | None = None) -> list[Sample]:
    """Samples from a 300-W style folder, a CSV file or a JSON file (see the module docstring)."""
    source = Path(source)
    if not source.exists():
        raise AnnotationError(f"no such annotation folder or file: {source}")
    if source.is_dir():
        samples = _read_folder(source)
    elif source.suffix.lower() == ".csv":
        samples = _read_csv(source)
    elif source.suffix.lower() == ".json":
        samples = _read_json(source)
    else:
        raise AnnotationError(f"{source}: annotations must be a folder, a .csv or a .json file")
    if not samples:
        raise AnnotationError(f"{source}: no annotated images found")
    if num_points is not None:
        for s in samples:
            if len(s.points) != num_points:
                raise AnnotationError(f"{s.source or s.image}: {len(s.points)} points, the scheme has {num_points}")
    for s in samples:  # a face frame is built from the points' box: it needs a width and a height
        extent = s.points.max(axis=0) - s.points.min(axis=0)
        if not np.isfinite(s.points).all() or (extent <= 0).any():
            raise AnnotationError(f"{s.source or s.image}: the points span no area (all on one line or at one place)")
        _check_inside(s)
    return samples


def _check_inside(sample: Sample) -> None:
    """Refuse a point more than the image's own size outside it: a typo (-5000), not an annotation. (Points a
    little beyond the border are normal: 300-W annotates faces cut by the frame.)"""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(sample.image) as im:
            side = max(im.size)  # EXIF rotation may swap the sides: the larger bounds both
    except (OSError, UnidentifiedImageError):
        return  # an unreadable image fails with its own message when it is read
    far = np.nonzero(((sample.points < -side) | (sample.points > 2 * side)).any(axis=1))[0]
    if not len(far):
        return
    k = int(far[0])
    where = sample.source or str(sample.image)
    x, y = sample.points[k]
    if where.endswith(".pts"):
        from fflm.pts import point_line

        where = f"{where}:{point_line(Path(where).read_text(), k)}"
        x, y = x + 1, y + 1  # as written in the file: .pts is 1-based
    raise AnnotationError(f"{where}: point {k + 1} at ({x:g}, {y:g}) is far outside the {side} px image")


def _read_folder(folder: Path) -> list[Sample]:
    images: dict[str, Path] = {}  # by exact stem ("a.pts" pairs with "a.jpg", not "a.0.jpg"; no glob patterns)
    for p in sorted(folder.iterdir()):
        if is_image_path(p):
            images.setdefault(p.stem, p)
    samples = []
    for pts in sorted(folder.glob("*.pts")):
        if pts.stem not in images:
            raise AnnotationError(f"{pts}: no image with the same stem beside it")
        points = read_pts(pts)
        samples.append(Sample(images[pts.stem], points, str(pts), read_visibility(pts, len(points))))
    return samples


def _read_csv(path: Path) -> list[Sample]:
    """One face per row, in either layout: fflm's own (`image`, then any columns, the points as named columns
    `x_0, y_0, …`; rows with face `none` are skipped), as `fflm detect/batch -f csv` writes it, or the plain
    `image,x0,y0,x1,y1,…` (a column pair per point). A relative image path is looked up beside the CSV file,
    then in the working directory (where fflm's results name their images as given on its command line)."""
    samples = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, None) or []]
        n = sum(1 for h in header if h.startswith("x_"))
        named = n > 0 and header[:1] == ["image"]
        if named:
            try:
                cols = [header.index(f"{a}_{i}") for i in range(n) for a in "xy"]
            except ValueError:
                raise AnnotationError(f"{path}:1: fflm's CSV layout needs columns x_0, y_0 … x_{n - 1}, y_{n - 1}") from None
        elif not header or header[0] != "image" or (len(header) - 1) % 2:
            raise AnnotationError(f"{path}:1: header must be fflm's CSV layout (image, …, x_0, y_0, x_1, y_1, …) "
                                  "or image,x0,y0,x1,y1,… (a column pair per point)")
        else:
            cols = list(range(1, len(header)))
        face = header.index("face") if named and "face" in header else None
        for no, row in enumerate(reader, 2):
            if not row or (face is not None and len(row) > face and row[face] == "none"):
                continue
            if len(row) == 1:
                raise AnnotationError(f"{path}:{no}: {row[0]} has no points")
            if len(row) != len(header):
                raise AnnotationError(f"{path}:{no}: {len(row)} columns, the header has {len(header)}")
            try:
                values = np.array([float(row[c]) for c in cols], dtype=np.float64)
            except ValueError:
                raise AnnotationError(f"{path}:{no}: non-numeric coordinate") from None
            if not np.isfinite(values).all():
                raise AnnotationError(f"{path}:{no}: non-finite coordinate")
            image = path.parent / row[0]
            if not image.is_file() and Path(row[0]).is_file():
                image = Path(row[0])
            if not image.is_file():
                raise AnnotationError(f"{path}:{no}: image not found: {row[0]} (looked beside the CSV file and "
                                      "in the working directory)")
            samples.append(Sample(image, values.reshape(-1, 2), f"{path}:{no}"))
    return samples


def _read_json(path: Path) -> list[Sample]:
    try:
        items = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(items, list):
        raise AnnotationError(f"{path}: expected a list of {{'image', 'landmarks'}} objects")
    samples = []
    for i, item in enumerate(items):
        try:
            pts = np.asarray(item["landmarks"], dtype=np.float64)
            if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
                raise ValueError
            image = path.parent / str(item["image"])
        except (KeyError, TypeError, ValueError):
            raise AnnotationError(f"{path}: item {i}: needs 'image' and 'landmarks' as [[x, y], ...]") from None
        if not image.is_file():
            raise AnnotationError(f"{path}: item {i}: image not found: {image}")
        samples.append(Sample(image, pts, f"{path}: item {i}"))
    return samples
