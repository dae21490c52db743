"""fflm's settings against dlib and MediaPipe on the same photos, in one run: ms per image and NME side by side.

    python benchmarks/speed.py [--val ../shared/data/300w/val] [--count N] [--threads 2] [--record DIR]

Every tool runs with its own face detector on the decoded RGB array (decoding is not timed): fflm's `predict`
with each of its presets (and, when openvino is installed, the default and fast presets with `--backend
openvino` on exports of their weights, `--exports`), dlib's HOG detector (upsampling once) and 68-point model when `dlib-bin` and
`face-recognition-models` are installed, MediaPipe Face Mesh when `mediapipe==0.10.14` is (its 468 points
mapped to 68 by benchmarks/mediapipe68.py, fitted on `--train` in the same run). The tools take turns on each
image, in an order that rotates from image to image, so a slow spell of a shared machine hits all of them alike.
ms per image: median over the images after one warm-up image each. NME: inter-ocular, percent, over the faces
each tool finds (a face is found when a detection overlaps the truth's box); `found` says how many.
`--record DIR` writes the run as `DIR/<date>-<machine>-speed.json` (fflm.cli.bench.record; see benchmarks/tables.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from mediapipe68 import MediaPipeMesh, apply_map, fitted_map, mediapipe_available  # noqa: E402

from fflm.cli.bench import record  # noqa: E402
from fflm.geometry import best_overlap, points_box  # noqa: E402
from fflm.imageio import read_image  # noqa: E402
from fflm.pipeline import Landmarker  # noqa: E402
from fflm.annotations import read_annotations  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "data" / "300w"
#: fflm's settings as Landmarker keyword arguments
PRESETS = {"fflm default": {}, "fflm --no-flip": {"flip": False}, "fflm --fast": {"preset": "fast"}}


def fflm_tool(kwargs: dict):
    lm = Landmarker(**kwargs)

    def run(image: np.ndarray, truth_box: np.ndarray) -> np.ndarray | None:
        faces = lm.predict(image)
        best = best_overlap(np.array([f.box for f in faces]).reshape(-1, 4), truth_box, min_iou=0.1)
        return None if best is None else faces[best].landmarks
    return run


def dlib_tool():
    from fflm.benchmarking.peers import DlibLandmarker

    tool = DlibLandmarker(upsample=1)

    def run(image: np.ndarray, truth_box: np.ndarray) -> np.ndarray | None:
        boxes = tool.detect(image)
        best = best_overlap(boxes, truth_box, min_iou=0.1)
        return None if best is None else tool.landmarks(image, boxes[best])
    return run, f"dlib {tool.version}"


def mediapipe_tool(train: Path):
    mesh = MediaPipeMesh()
    weights, fitted = fitted_map(train, mesh)

    def run(image: np.ndarray, truth_box: np.ndarray) -> np.ndarray | None:
        points = mesh.points(image)
        return None if points is None else apply_map(weights, points)
    return run, f"MediaPipe Face Mesh {mesh.version} (map fitted on {fitted} faces)"


def openvino_presets(folder: Path) -> dict:
    """The default and fast presets with their networks in OpenVINO (`--backend openvino`), from the exports in
    `folder/<weights name>/`, made there first where missing; none when openvino is not installed."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return {}
    from fflm.export import MANIFEST, export_onnx
    from fflm.presets import preset
    from fflm.weights import shipped

    out = {}
    for name, kw in (("fflm default, --backend openvino", {}), ("fflm --fast, --backend openvino", {"preset": "fast"})):
        weights = preset(kw.get("preset", "default")).weights
        if not (folder / weights / MANIFEST).is_file():
            export_onnx(folder / weights, shipped(weights))
        out[name] = {**kw, "backend": "openvino", "onnx_dir": folder / weights}
    return out


def tools(train: Path, with_peers: bool, exports: Path) -> dict:
    out = {name: fflm_tool(kw) for name, kw in {**PRESETS, **openvino_presets(exports)}.items()}
    if with_peers:
        from fflm.benchmarking.peers import dlib_available

        if dlib_available():
            run, name = dlib_tool()
            out[name] = run
        if mediapipe_available():
            run, name = mediapipe_tool(train)
            out[name] = run
    return out


def measure(samples: list, runners: dict) -> dict:
    """Per tool: median ms per image, faces found, mean and median inter-ocular NME (%) on those found."""
    names = list(runners)
    times = {n: [] for n in names}
    errors = {n: [] for n in names}
    first = read_image(samples[0].image)
    for n in names:  # warm-up
        runners[n](first, points_box(samples[0].points))
    for k, s in enumerate(samples):
        image, tbox = read_image(s.image), points_box(s.points)
        iod = float(np.linalg.norm(s.points[36] - s.points[45]))
        for n in names[k % len(names):] + names[: k % len(names)]:
            t = time.perf_counter()
            pts = runners[n](image, tbox)
            times[n].append(time.perf_counter() - t)
            errors[n].append(np.inf if pts is None else float(np.linalg.norm(pts - s.points, axis=1).mean()) / iod)
    out = {}
    for n in names:
        e = np.array(errors[n])
        found = e[np.isfinite(e)]
        out[n] = {"ms_per_image": 1000 * statistics.median(times[n]), "faces": len(e), "found": int(len(found)),
                  "nme": 100 * float(found.mean()), "nme_median": 100 * float(np.median(found))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", type=Path, default=SHARED / "val")
    ap.add_argument("--train", type=Path, default=SHARED / "train", help="faces the MediaPipe map is fitted on")
    ap.add_argument("--count", type=int, default=0, help="first N faces of --val (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--record", type=Path, metavar="DIR")
    ap.add_argument("--exports", type=Path, metavar="DIR", help="ONNX exports of the shipped weights, one folder per "
                    "name (made where missing; default: a temporary folder)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    samples = read_annotations(args.val)
    samples = samples[: args.count] if args.count else samples
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(samples, tools(args.train, not args.no_peers, args.exports or Path(tmp)))
    print(f"{len(samples)} faces of {args.val}, {args.threads} threads, each tool with its own detector")
    print(f"{'tool':<58} {'ms/image':>9} {'found':>7} {'NME %':>7} {'median':>7}")
    for n, r in result.items():
        print(f"{n:<58} {r['ms_per_image']:>9.1f} {r['found']:>7} {r['nme']:>7.3f} {r['nme_median']:>7.3f}")
    if args.record:
        command = f"python benchmarks/speed.py --threads {args.threads}" + (f" --count {args.count}" if args.count else "")
        args.record.mkdir(parents=True, exist_ok=True)
        print(f"recorded {record(result, args.record, command, kind='speed')}")


if __name__ == "__main__":
    main()
