"""Does precision grow with resolution? fflm and dlib on the 60 `300w/hires` faces at several sizes, one run.

    python benchmarks/resolution.py [--hires ../shared/data/300w/hires] [--weights W ...] [--sizes 256,384,512,768,native]
                                    [--no-dlib] [--json out.json] [--record DIR]

Each crop (801-1947 px, square) is resized with cv2.INTER_AREA to a side of S px, or kept (`native`); the truth is
scaled with the pixel-centre map x' = (x + 0.5)·s - 0.5. fflm gets the truth's tight box (as `fflm eval`); dlib
(when `dlib-bin` and `face-recognition-models` are installed) its HOG detection overlapping the truth most
(upsampling once up to 512 px, not above: its faces are then ≥ 300 px), and a face it misses is left out of its
mean (the count is printed). NME is inter-ocular (outer eye corners), in percent, over all 68 points and over the
51 that fflm's regional networks refine (eyes, brows, nose, mouth), with the same normaliser. `--record DIR` writes
the figures as `DIR/<date>-<machine>-resolution.json` (fflm.cli.bench.record) for the README's table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from fflm.detect.base import Detection
from fflm.evaluate import nme
from fflm.geometry import best_overlap, points_box
from fflm.imageio import read_image
from fflm.pipeline import Landmarker
from fflm.scheme import IBUG68
from fflm.annotations import read_annotations

HERE = Path(__file__).resolve().parent


def resized(image: np.ndarray, points: np.ndarray, size: str) -> tuple[np.ndarray, np.ndarray]:
    """The square crop at side `size` (or as it is for "native") and its points under the pixel-centre map."""
    if size == "native":
        return image, points
    side = int(size)
    s = side / image.shape[1]
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA), (points + 0.5) * s - 0.5


def scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean inter-ocular NME (%) over the 68 points and over the refined ones (faces with NaN predictions left out)."""
    ok = ~np.isnan(pred).any(axis=(1, 2))
    ref = IBUG68.refined_indices
    return {"found": int(ok.sum()),
            "nme_68": 100 * float(nme(pred[ok], truth[ok], IBUG68.norm_points).mean()),
            "nme_51": 100 * float(nme(pred[ok][:, ref], truth[ok][:, ref], IBUG68.norm_points, truth[ok]).mean())}


def run_fflm(lm: Landmarker, images: list[np.ndarray], truths: np.ndarray) -> np.ndarray:
    dets = [[Detection(points_box(t), 1.0)] for t in truths]
    return np.stack([faces[0].landmarks for faces in lm.landmarks(images, dets)])


def run_dlib(tool, images: list[np.ndarray], truths: np.ndarray) -> np.ndarray:
    out = np.full(truths.shape, np.nan)
    for k, (img, t) in enumerate(zip(images, truths)):
        tool.upsample = 1 if img.shape[1] <= 512 else 0
        boxes = tool.detect(img)
        best = best_overlap(boxes, points_box(t), min_iou=-1.0)
        if best is not None:
            out[k] = tool.landmarks(img, boxes[best])
    return out


SIZES = "256,384,512,768,native"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hires", default=str(HERE.parents[1] / "shared" / "data" / "300w" / "hires"))
    ap.add_argument("--weights", nargs="*", default=[None], help="fflm weights files (default: the shipped model)")
    ap.add_argument("--sizes", default=SIZES)
    ap.add_argument("--no-dlib", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--record", type=Path, metavar="DIR", help="also write them to DIR/<date>-<machine>-resolution.json")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    samples = read_annotations(a.hires, 68)
    originals = [read_image(s.image) for s in samples]
    sizes = a.sizes.split(",")
    tools = {}
    for w in a.weights:
        lm = Landmarker(weights=w, device="cpu", detector="none")
        tools[f"fflm {Path(lm.weights_path).name}"] = lambda imgs, t, lm=lm: run_fflm(lm, imgs, t)
    if not a.no_dlib:
        from fflm.benchmarking.peers import DlibLandmarker, dlib_available

        if dlib_available():
            dlib_tool = DlibLandmarker()
            tools[f"dlib {dlib_tool.version}"] = lambda imgs, t: run_dlib(dlib_tool, imgs, t)
    results: dict = {"faces": len(samples), "sizes": sizes, "tools": {}}
    for size in sizes:
        pairs = [resized(img, s.points, size) for img, s in zip(originals, samples)]
        images, truths = [p[0] for p in pairs], np.stack([p[1] for p in pairs])
        for name, tool in tools.items():
            t0 = time.perf_counter()
            r = scores(tool(images, truths), truths)
            r["seconds"] = round(time.perf_counter() - t0, 1)
            results["tools"].setdefault(name, {})[size] = r
    head = f"{'tool, points':<44}" + "".join(f"{s:>9}" for s in sizes)
    print(f"300w/hires ({len(samples)} faces), inter-ocular NME %, by crop side\n{head}")
    for name, by_size in results["tools"].items():
        for pts in ("68", "51"):
            print(f"{name + ', ' + pts:<44}" + "".join(f"{by_size[s]['nme_' + pts]:9.3f}" for s in sizes))
        missed = {s: len(samples) - by_size[s]["found"] for s in sizes if by_size[s]["found"] < len(samples)}
        if missed:
            print(f"  ({name} missed faces at: {missed})")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n")
    if a.record:
        from fflm.cli.bench import record

        command = ("python benchmarks/resolution.py" + (f" --sizes {a.sizes}" if a.sizes != SIZES else "")
                   + ("".join(f" --weights {w}" for w in a.weights if w) if a.weights != [None] else ""))
        a.record.mkdir(parents=True, exist_ok=True)
        print(f"recorded {record(results, a.record, command, kind='resolution')}")


if __name__ == "__main__":
    main()
