"""Fit the landmark-quality map (fflm.quality) of the shipped landmark weights.

    python -m fflm.train.fit_quality [--shared ../shared] [--faces 400] [--out fflm/assets/quality.json]

Positives: 300-W train faces as the default detector frames them. Negatives: random background squares (no face or
ignore region in them) of the scene photos of the choice split (fflm.train.detector_data.scene_splits), each given to the
Landmarker as a face box. Prints the ROC AUC on these training sets.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

from fflm.train.detector_data import background_boxes, scene_splits
from fflm.detect.metrics import roc_auc
from fflm.quality import QUALITY_ASSET, fit_logistic

HERE = Path(__file__).resolve().parents[2]


def face_confidences(lm, folder: Path, step: int) -> np.ndarray:
    """Mean point confidence of each face the Landmarker finds in every `step`-th image of a 300-W folder."""
    from fflm.imageio import read_image

    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))[::step]
    return np.array([f.landmark_scores.mean() for p in images for f in lm.predict(read_image(p))])


def crop_confidences(lm, photos, per_photo: int = 2, seed: int = 0) -> np.ndarray:
    """Mean point confidence on background squares of scene photos given as face boxes."""
    rng = np.random.default_rng(seed)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # boxes reaching the border are clipped, with a warning each
        for p in photos:
            boxes = background_boxes(p, rng, per_photo)
            if len(boxes):
                out += [f.landmark_scores.mean() for f in lm.predict(p.decode(), boxes)]
    return np.array(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(HERE.parent / "shared"))
    ap.add_argument("--step", type=int, default=5, help="every N-th 300-W train image")
    ap.add_argument("--out", default=str(HERE / "fflm" / "assets" / QUALITY_ASSET))
    a = ap.parse_args(argv)
    import torch

    from fflm.pipeline import Landmarker

    torch.set_num_threads(1)
    lm = Landmarker(device="cpu")
    shared = Path(a.shared)
    pos = face_confidences(lm, shared / "data" / "300w" / "train", a.step)
    choose, _ = scene_splits(shared / "data" / "scenes")
    neg = crop_confidences(lm, choose[::2])
    centre, width = fit_logistic(pos, neg)
    report = {"centre": round(centre, 4), "width": round(width, 4), "faces": len(pos), "crops": len(neg),
              "train_auc": round(roc_auc(pos, neg), 5), "weights": Path(lm.weights_path).name}
    Path(a.out).write_text(json.dumps(report) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
