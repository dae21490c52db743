"""The exported backends against torch on this CPU, in one run: `python benchmarks/onnx_backend.py [--out FILE.json]`

1. Agreement: every face of `300w/val` (box = the truth's tight box, as `fflm eval`) through torch float32 and
   through the onnxruntime backend; the largest and mean point difference in pixels.
2. Speed: ms per face of the landmark stage (`Landmarker.landmarks` on decoded images, boxes given, batches of 8,
   default settings with the mirrored passes) for torch float32, torch bfloat16, ONNX Runtime float32 and, when
   openvino is installed, OpenVINO float32 and bfloat16, on 1 and 2 threads; the settings take turns round by
   round, the median round of each is reported.
The ONNX files are exported from the shipped weights into a temporary folder first (or taken from --onnx-dir).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from fflm.export import export_onnx
from fflm.imageio import read_image
from fflm.pipeline import Landmarker
from fflm.pts import read_pts

VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "300w" / "val"


def faces(limit: int | None = None) -> tuple[list[np.ndarray], list[list[list[float]]]]:
    """Decoded val images and each one's truth box (tight box of its points)."""
    paths = sorted(VAL.glob("*.jpg"))[:limit]
    images, boxes = [], []
    for p in paths:
        pts = read_pts(p.with_suffix(".pts"))
        images.append(read_image(p))
        boxes.append([[*pts.min(axis=0), *pts.max(axis=0)]])
    return images, boxes


def landmarks(lm: Landmarker, images: list[np.ndarray], boxes: list, batch: int = 8) -> np.ndarray:
    out = []
    for i in range(0, len(images), batch):
        ims = images[i : i + batch]
        dets = [lm.detections(im, b) for im, b in zip(ims, boxes[i : i + batch])]
        out += [fs[0].landmarks for fs in lm.landmarks(ims, dets)]
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx-dir", type=Path, help="an existing export of the shipped weights")
    ap.add_argument("--faces", type=int, default=40, help="faces timed per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, help="write the figures as JSON")
    ap.add_argument("--machine", default="2-core Intel Xeon VM, no GPU, torch {torch}, contended (other jobs running)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory()
    onnx_dir = args.onnx_dir or Path(tmp.name)
    if args.onnx_dir is None:
        export_onnx(onnx_dir)

    images, boxes = faces()
    t = time.perf_counter()
    ref = landmarks(Landmarker(device="cpu", precision="float32"), images, boxes)
    t_torch = time.perf_counter() - t
    t = time.perf_counter()
    got = landmarks(Landmarker(backend="onnxruntime", onnx_dir=onnx_dir), images, boxes)
    t_ort = time.perf_counter() - t
    diff = np.linalg.norm(ref - got, axis=-1)
    agreement = {"faces": len(images), "max_px": round(float(diff.max()), 6), "mean_px": round(float(diff.mean()), 6),
                 "seconds_torch_float32": round(t_torch, 1), "seconds_onnxruntime": round(t_ort, 1)}
    print(f"agreement on {len(images)} faces of 300w/val: max {diff.max():.5f} px, mean {diff.mean():.6f} px")

    images, boxes = images[: args.faces], boxes[: args.faces]
    settings = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)  # ONNX Runtime's sessions take torch's thread count when they are made
        settings[("torch", "float32", threads)] = Landmarker(device="cpu", precision="float32")
        settings[("torch", "bfloat16", threads)] = Landmarker(device="cpu", precision="bfloat16")
        settings[("onnxruntime", "float32", threads)] = Landmarker(backend="onnxruntime", onnx_dir=onnx_dir)
        if importlib.util.find_spec("openvino") is not None:
            for precision in ("float32", "bfloat16"):
                settings[("openvino", precision, threads)] = Landmarker(backend="openvino", onnx_dir=onnx_dir,
                                                                        precision=precision)
    times: dict[tuple, list[float]] = {k: [] for k in settings}
    for r in range(args.rounds + 1):  # round 0 warms up
        for key, lm in settings.items():
            torch.set_num_threads(key[2])
            t = time.perf_counter()
            landmarks(lm, images, boxes)
            if r:
                times[key].append((time.perf_counter() - t) * 1000 / len(images))
    rows = [{"backend": b, "precision": p, "threads": n, "ms_per_face": round(statistics.median(v), 1),
             "ms_per_face_rounds": [round(x, 1) for x in v]} for (b, p, n), v in times.items()]
    for row in rows:
        print(f"{row['backend']:12s} {row['precision']:9s} {row['threads']} thread(s): {row['ms_per_face']:6.1f} ms/face")
    result = {
        "command": "python -P benchmarks/onnx_backend.py" + (f" --faces {args.faces}" if args.faces != 40 else "")
                   + (f" --rounds {args.rounds}" if args.rounds != 5 else ""),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": args.machine.format(torch=torch.__version__),
        "note": "landmark stage only (boxes given), batches of 8, mirrored passes on; settings take turns each round",
        "figures": {"agreement_300w_val": agreement, "speed": rows},
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
