"""Annotated faces from several roots, each with its own settings: `PATH[,KEY=VALUE,...]` on the command line
(`fflm train --data`, `fflm eval`).

Keys: `resolution` (the training-frame side for this source's faces; default the run's --resolution), `repeat`
(how many times each face is drawn per epoch; fractions draw a random part), `jaw` (loss weight of the points no
regional network refines, the jaw of the 68-point scheme, on faces with the source's own labels; 0 leaves them
out, e.g. for 3D-style labels whose jaw is not the visible contour), `hidden` (loss weight of the points a `.vis` file
marks self-occluded; default 0 leaves them out; where the labels put such a point at its 3D-style position, a weight
teaches where a turned head's hidden contour lies), `distill` (with `fflm train --teacher`: how far this source's
targets move to the teacher's points; default the run's --distill; 0 keeps its labels),
`labels` (a folder whose `.pts`/`.vis` files replace the source's own labels where a face has one; relative to the
source), `exclude` (a text file of image stems to leave out, one a line; relative to the working directory) and
`only` (a text file of the stems to keep: a held-out part, for `fflm eval`).
Examples: `300w/train_hires,resolution=768`, `aflw2000/yaw30_60,labels=../labels_merlrav,jaw=0.3`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from fflm.annotations import Sample, read_annotations, read_visibility
from fflm.errors import AnnotationError, UsageError
from fflm.pts import read_pts


@dataclass(frozen=True)
class Source:
    """One training root and its settings (see the module docstring)."""

    path: str
    resolution: int | None = None
    repeat: float = 1.0
    jaw: float = 1.0
    labels: str | None = None
    exclude: str | None = None
    only: str | None = None
    hidden: float = 0.0
    distill: float | None = None

    @classmethod
    def parse(cls, spec: str) -> "Source":
        """`PATH[,KEY=VALUE,...]`; ValueError names an unknown key or a bad value."""
        path, *pairs = [p.strip() for p in spec.split(",")]
        if not path:
            raise UsageError(f"{spec!r}: no path before the settings")
        kinds = {f.name: f.type for f in fields(cls) if f.name != "path"}
        values: dict = {}
        for pair in filter(None, pairs):
            key, eq, value = (s.strip() for s in pair.partition("="))
            if key not in kinds:
                raise UsageError(f"{spec!r}: unknown setting {key!r} (one of {', '.join(kinds)})")
            if not eq or not value:
                raise UsageError(f"{spec!r}: {key} needs a value ({key}=...)")
            if key in ("labels", "exclude", "only"):
                values[key] = value
                continue
            try:
                number = int(value) if key == "resolution" else float(value)
            except ValueError:
                raise UsageError(f"{spec!r}: {key} needs a number, got {value!r}") from None
            if not number >= 0 or (key == "resolution" and not 64 <= number <= 4096) or (
                    key in ("hidden", "distill") and number > 1):
                raise UsageError(f"{spec!r}: {key} out of range ({value})")
            values[key] = number
        return cls(path, **values)

    def spec(self) -> str:
        """The command-line form (what config.json records)."""
        default = Source(self.path)
        extra = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                 if f.name != "path" and getattr(self, f.name) != getattr(default, f.name)]
        return ",".join([self.path, *extra])


def read_source(source: Source, num_points: int, unrefined: list[int]) -> list[Sample]:
    """The source's samples with its labels override, exclusions and per-point loss weights applied."""
    samples = read_annotations(source.path, num_points)
    if source.exclude:
        stems = _stems(source, source.exclude)
        samples = [s for s in samples if s.image.stem not in stems]
    if source.only:
        stems = _stems(source, source.only)
        samples = [s for s in samples if s.image.stem in stems]
    labels = Path(source.path) / source.labels if source.labels else None
    if labels is not None and not labels.is_dir():
        raise AnnotationError(f"{source.path}: labels folder not found: {labels}")
    samples = [_relabelled(s, labels, num_points, unrefined, source.jaw, source.hidden) for s in samples]
    if not samples:
        raise AnnotationError(f"{source.path}: no training faces left after the source's settings")
    return samples


def _stems(source: Source, path: str) -> set[str]:
    try:
        return {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}
    except OSError as e:
        raise AnnotationError(f"{source.path}: cannot read the list of images {path}: {e.strerror}") from None


def _relabelled(sample: Sample, labels: Path | None, num_points: int, unrefined: list[int], jaw: float,
                hidden: float) -> Sample:
    """The face with the labels folder's points where it has them (self-occluded points weighted `hidden`), else
    its own with the jaw weight applied."""
    pts = labels / f"{sample.image.stem}.pts" if labels is not None else None
    if pts is None or not pts.is_file():
        return _with_jaw_weight(sample, unrefined, jaw) if jaw != 1.0 and unrefined else sample
    points = read_pts(pts)
    if len(points) != num_points:
        raise AnnotationError(f"{pts}: {len(points)} points, the scheme has {num_points}")
    weights = read_visibility(pts, num_points)
    if weights is not None and hidden:
        weights = np.where(weights == 0, hidden, weights)
    return replace(sample, points=points, weights=weights, source=str(pts))


def _with_jaw_weight(sample: Sample, unrefined: list[int], weight: float) -> Sample:
    w = np.ones(len(sample.points)) if sample.weights is None else sample.weights.copy()
    w[unrefined] *= weight
    return replace(sample, weights=w)
