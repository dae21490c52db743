"""dlib's landmark method trained on the faces fflm's shipped model was trained on: a same-data comparison.

    python benchmarks/train_dlib_300w.py [--train ../shared/data/300w/train] [--out runs/dlib_300w_train.dat]
    python benchmarks/landmarks_300w.py --boxes detector --dlib-model runs/dlib_300w_train.dat

Needs `dlib-bin`. dlib's recipe for its 68-point model, on fflm's training faces: each face framed by dlib's
HOG detector (upsampling once; the detection overlapping the annotated landmarks' box most, IoU > 0.3, else
the face is left out), every face also mirrored (points through the scheme's flip pairs), and the trainer's
default options (10 cascades of 500 trees of depth 4, oversampling 20, nu 0.1, 400 feature pixels).
dlib's own model was trained on about 3,300 300-W faces, 478 of them in 300w/val (with options unknown to us).
About 16 minutes on two cores for the 2,012 faces of 300w/train.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fflm.geometry import best_overlap, points_box
from fflm.imageio import read_image
from fflm.scheme import IBUG68
from fflm.annotations import Sample, read_annotations

HERE = Path(__file__).resolve().parent


def mirrored(image: np.ndarray, points: np.ndarray, perm: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The image flipped left-right and its points (0-based pixel centres: x -> width - 1 - x, renumbered)."""
    flipped = points[perm].copy()
    flipped[:, 0] = image.shape[1] - 1 - flipped[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped


def training_faces(samples: list[Sample], detect: Callable[[np.ndarray], np.ndarray], perm: list[int],
                   min_iou: float = 0.3) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], int]:
    """(image, detector box, points) for every face and its mirror that `detect` finds, and how many it missed."""
    faces, missed = [], 0
    for s in samples:
        image = np.ascontiguousarray(read_image(s.image))
        for img, pts in ((image, np.asarray(s.points)), mirrored(image, np.asarray(s.points), perm)):
            boxes = detect(img)
            best = best_overlap(boxes, points_box(pts), min_iou)
            if best is None:
                missed += 1
            else:
                faces.append((img, boxes[best], pts))
    return faces, missed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", default=str(HERE.parent.parent / "shared" / "data" / "300w" / "train"))
    ap.add_argument("--out", default="runs/dlib_300w_train.dat")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import dlib

    from fflm.benchmarking.peers import hog_boxes

    hog = dlib.get_frontal_face_detector()
    faces, missed = training_faces(read_annotations(args.train, 68), lambda img: hog_boxes(hog, img, 1),
                                   IBUG68.flip_permutation())
    print(f"{len(faces)} faces (with mirrors), {missed} not found by the HOG detector", file=sys.stderr)

    def detection(box: np.ndarray, pts: np.ndarray):
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        return dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in pts])

    options = dlib.shape_predictor_training_options()
    options.num_threads = args.threads
    t = time.perf_counter()
    predictor = dlib.train_shape_predictor([f[0] for f in faces], [[detection(f[1], f[2])] for f in faces], options)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    predictor.save(args.out)
    print(f"trained in {time.perf_counter() - t:.0f} s: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
