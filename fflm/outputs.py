"""Writers for JSON, JSON Lines, CSV, .pts and overlay images, through fflm.fileio (regular files atomically,
devices, FIFOs and stdout streamed into; see docs/outputs.md).

Coordinates are original-image pixels of the upright image, 0-based pixel centres (OpenCV's convention),
except .pts files, which are 1-based as in 300-W.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from fflm.choices import FORMATS
from fflm.errors import UsageError
from fflm.fileio import STDOUT, OutputError, atomic_file, atomic_write, is_stream, open_stream, why
from fflm.pts import format_pts
from fflm.scheme import LandmarkScheme


@dataclass
class ImageResult:
    """The faces found in one image (or frame), or the error that stopped it."""

    image: str
    width: int = 0
    height: int = 0
    faces: list = field(default_factory=list)  # list[fflm.pipeline.Face]
    error: str | None = None
    frame: int | None = None  # frame number when the image is a video frame
    time_ms: float | None = None  # the frame's time in the video, milliseconds from the start
    name: str | None = None  # output stem, e.g. "day1/img001" for a batch over sub-folders; default: the file's stem
    overlay_error: str | None = None  # the landmarks are kept when only the overlay could not be written

    @property
    def stem(self) -> str:
        return self.name or Path(self.image).stem

    @property
    def label(self) -> str:
        """`image`, or `video#frame` for a video frame (the CSV's image column)."""
        return self.image if self.frame is None else f"{self.image}#{self.frame}"

    def to_dict(self) -> dict:
        d: dict = {"image": self.image}
        if self.frame is not None:
            d["frame"] = self.frame
        if self.time_ms is not None:
            d["time_ms"] = round(self.time_ms, 3)
        if self.error is not None:
            return {**d, "error": self.error}
        d = {**d, "width": self.width, "height": self.height, "faces": [f.to_dict() for f in self.faces]}
        return d if self.overlay_error is None else {**d, "overlay_error": self.overlay_error}


_SCALAR = r"(?:-?\d[\d.eE+-]*|null|true|false)"
_FLAT_LIST = re.compile(rf"\[\n\s*({_SCALAR}(?:,\n\s*{_SCALAR})*)\n\s*\]")  # strings hold no raw newline


def dumps(data: object) -> str:
    """Indented JSON with every list of numbers on one line (a box, a point `[x, y]`, the scores): one line per
    point instead of four, still strict JSON."""
    return _FLAT_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",\n")) + "]",
                          json.dumps(data, indent=1))


def to_json(results: list[ImageResult], single: bool) -> str:
    """One object for a single image, a list otherwise."""
    data = results[0].to_dict() if single and len(results) == 1 else [r.to_dict() for r in results]
    return dumps(data) + "\n"


def to_jsonl(results: Iterable[ImageResult]) -> str:
    return "".join(json.dumps(r.to_dict()) + "\n" for r in results)


def csv_header(num_points: int) -> list[str]:
    """The CSV layout of results and annotations alike: `image`, the image's `width` and `height`, `face` (its
    number, or `none`), the detector's `score`, the landmarks' `quality` (fflm.quality), the face box
    `box_x0 … box_y1`, the points `x_i, y_i` and their scores `score_i`, then a video frame's `track` id and `time_ms`. Annotations need only `image` and the points."""
    return (["image", "width", "height", "face", "score", "quality", "box_x0", "box_y0", "box_x1", "box_y1"]
            + [f"{a}_{i}" for i in range(num_points) for a in "xy"] + [f"score_{i}" for i in range(num_points)]
            + ["track", "time_ms"])


def csv_rows(r: ImageResult, num_points: int) -> list[list]:
    """The CSV rows of one result: one per face; an image with no face gets one row with face `none` and
    empty numbers; a failed image none (its error is reported on stderr and in JSON)."""
    if r.error is not None:
        return []
    time = "" if r.time_ms is None else f"{r.time_ms:.3f}"
    if not r.faces:
        return [[r.label, r.width, r.height, "none"] + [""] * (6 + 3 * num_points) + ["", time]]
    return [[r.label, r.width, r.height, k, f"{f.score:.4f}", "" if f.quality is None else f"{f.quality:.4f}"]
            + [f"{v:.3f}" for v in f.box]
            + [f"{v:.3f}" for v in np.ravel(f.landmarks)] + [f"{s:.4f}" for s in f.landmark_scores]
            + ["" if getattr(f, "track", None) is None else f.track, time]
            for k, f in enumerate(r.faces)]


def to_csv(results: Iterable[ImageResult], num_points: int) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_header(num_points))
    for r in results:
        w.writerows(csv_rows(r, num_points))
    return buf.getvalue()


def read_csv(text: str) -> list[dict]:
    """Parse fflm's CSV back into {image, width, height, face, score, quality, box, landmarks, landmark_scores, track,
    time_ms} rows (for tests and tools); track and time_ms are None where empty."""
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        size = {"image": row["image"], "width": int(row["width"]), "height": int(row["height"])}
        time = float(row["time_ms"]) if row.get("time_ms") else None
        if row["face"] == "none":
            rows.append({**size, "face": None, "time_ms": time})
            continue
        n = sum(1 for k in row if k.startswith("x_"))
        rows.append({
            **size, "face": int(row["face"]), "score": float(row["score"]),
            "quality": float(row["quality"]) if row.get("quality") else None,
            "box": [float(row[f"box_{k}"]) for k in ("x0", "y0", "x1", "y1")],
            "landmarks": [[float(row[f"x_{i}"]), float(row[f"y_{i}"])] for i in range(n)],
            "landmark_scores": [float(row[f"score_{i}"]) for i in range(n)],
            "track": int(row["track"]) if row.get("track") else None, "time_ms": time,
        })
    return rows


def pts_name(result: ImageResult, face: int) -> str:
    """`<stem>_<face>.pts`, or `<video stem>_f<frame>_<face>.pts` for a video frame."""
    stem = result.stem
    return f"{stem}_{face}.pts" if result.frame is None else f"{stem}_f{result.frame:06d}_{face}.pts"


def write_pts_files(results: Iterable[ImageResult], folder: str | Path) -> list[Path]:
    """One 300-W .pts file per face into `folder`; returns the paths written."""
    written = []
    for r in results:
        for k, f in enumerate(r.faces):
            path = Path(folder) / pts_name(r, k)
            atomic_write(path, format_pts(f.landmarks))
            written.append(path)
    return written


class ResultWriter:
    """Writes results as they come, in input order, so that memory stays bounded and an interrupted run keeps
    what finished: JSON Lines and CSV rows are appended and flushed per image, .pts files written per image,
    JSON collected in an anonymous temp file and written (atomically to a regular file) by `close`.
    `out` is a file (a folder for pts); None or `-` is stdout."""

    def __init__(self, fmt: str, out: str | Path | None, num_points: int, single: bool = False) -> None:
        if fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
        if fmt == "pts" and out in (None, STDOUT):
            raise UsageError("--format pts writes one file per face: give a folder with --out")
        self.fmt, self.out, self.num_points, self.single = fmt, STDOUT if out is None else out, num_points, single
        self.count = 0
        self.first: dict | None = None
        if fmt in ("jsonl", "csv"):
            self.stream = open_stream(self.out)
            if fmt == "csv":
                self.stream.write(",".join(csv_header(num_points)) + "\n")
                self.stream.flush()
        elif fmt == "json":
            self.body = tempfile.TemporaryFile()

    def add(self, r: ImageResult) -> None:
        """Write one result (raises OutputError when the output cannot take it)."""
        self.count += 1
        try:
            if self.fmt == "pts":
                write_pts_files([r], self.out)
            elif self.fmt == "jsonl":
                self.stream.write(json.dumps(r.to_dict()) + "\n")
                self.stream.flush()
            elif self.fmt == "csv":  # one write per image: a stop between two writes never cuts an image's rows
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\n").writerows(csv_rows(r, self.num_points))
                self.stream.write(buf.getvalue())
                self.stream.flush()
            else:
                d = r.to_dict()
                self.first = d if self.count == 1 else None
                item = textwrap.indent(dumps(d), " ")
                self.body.write(((",\n" if self.count > 1 else "") + item).encode())
        except OutputError:
            raise
        except OSError as e:
            raise OutputError(f"cannot write {'stdout' if str(self.out) == STDOUT else self.out}: {why(e)}") from None

    def close(self, incomplete: str | None = None) -> None:
        """Finish the output; `incomplete` (why the run stopped) marks a JSON output as holding only part of
        the inputs: an object {"incomplete": true, "reason", "done", "results": [...]} instead of the list."""
        if self.fmt in ("jsonl", "csv"):
            self.stream.close()
        elif self.fmt == "json":
            if incomplete is not None:
                head = f'{{\n "incomplete": true,\n "reason": {json.dumps(incomplete)},\n "done": {self.count},\n "results": [\n'
                parts = [head.encode(), None, b"\n ]\n}\n"]
            elif self.single and self.first is not None:
                parts = [(dumps(self.first) + "\n").encode()]
            else:
                parts = [b"[\n", None, b"\n]\n" if self.count else b"]\n"]
            self._write_json(parts)

    def _write_json(self, parts: list[bytes | None]) -> None:
        """The parts, with the collected body where a part is None, into the output."""
        self.body.seek(0)
        with (open_stream(self.out, binary=True) if is_stream(self.out) else atomic_file(self.out)) as f:
            for part in parts:
                if part is None:
                    shutil.copyfileobj(self.body, f)
                else:
                    f.write(part)
        self.body.close()


REGION_COLOURS = [(255, 64, 64), (64, 160, 255), (64, 220, 64), (255, 200, 0), (220, 80, 255), (0, 220, 220)]


def draw_overlay(image: np.ndarray, faces: list, scheme: LandmarkScheme) -> np.ndarray:
    """RGB copy of the image with each face's box, points (one colour per region, white for the rest) and track
    id (video), with sizes that scale with the image so they stay readable on a 4K photo."""
    out = image.copy()
    scale = max(out.shape[:2]) / 1000.0
    thick = max(1, round(2 * scale))
    radius = max(1, round(2.5 * scale))
    colour_of = {i: REGION_COLOURS[r % len(REGION_COLOURS)] for r, reg in enumerate(scheme.regions) for i in reg.indices}
    sub = 4  # cv2 fixed-point shift: sub-pixel positions are drawn where they are
    for f in faces:
        x0, y0, x1, y1 = (int(round(v * (1 << sub))) for v in f.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 255), thick, cv2.LINE_AA, sub)
        if getattr(f, "track", None) is not None:
            cv2.putText(out, f"#{f.track}", (x0 >> sub, (y0 >> sub) - 3 * thick), cv2.FONT_HERSHEY_SIMPLEX,
                        0.8 * scale, (255, 255, 255), thick, cv2.LINE_AA)
        for i, (x, y) in enumerate(f.landmarks):
            c = (int(round(x * (1 << sub))), int(round(y * (1 << sub))))
            cv2.circle(out, c, radius << sub, colour_of.get(i, (255, 255, 255)), -1, cv2.LINE_AA, sub)
    return out


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Encode by the file's extension (JPEG, PNG, …) and write atomically."""
    path = Path(path)
    try:
        ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise UsageError(f"cannot encode an image as {path.suffix!r}")
    atomic_write(path, buf.tobytes())


def render(results: list[ImageResult], fmt: str, num_points: int, single: bool = False) -> str:
    """The text of a json, jsonl or csv output."""
    if fmt == "json":
        return to_json(results, single)
    if fmt == "jsonl":
        return to_jsonl(results)
    if fmt == "csv":
        return to_csv(results, num_points)
    raise UsageError(f"{fmt!r} is not a text format (json, jsonl, csv)")


def write_results(results: list[ImageResult], fmt: str, out: str | Path | None, num_points: int,
                  single: bool = False) -> str | None:
    """Write results to `out` (a file; a folder for pts), or return the text for stdout when `out` is None."""
    if out is None and fmt != "pts":
        return render(results, fmt, num_points, single)
    w = ResultWriter(fmt, out, num_points, single)
    for r in results:
        w.add(r)
    w.close()
    return None


def overlay_path(target: str | Path, result: ImageResult, many: bool) -> Path:
    """Where an overlay goes: `target` itself for one image named like an image, else inside folder `target`."""
    target = Path(target)
    from fflm.imageio import is_image_path

    if not many and (is_image_path(target) or is_stream(target)) and not target.is_dir():
        return target
    stem = result.stem if result.frame is None else f"{result.stem}_f{result.frame:06d}"
    return target / f"{stem}.fflm.jpg"


def overlay_writer(target: str | Path | None, scheme: LandmarkScheme, many: bool):
    """The per-image callback that draws a result's faces on its pixels and writes it to `overlay_path`
    (None without a target), for `fflm.runner.run`'s `visit`."""
    if target is None:
        return None

    def write(result: ImageResult, pixels: np.ndarray) -> None:
        write_image(overlay_path(target, result, many), draw_overlay(pixels, result.faces, scheme))

    return write
