"""Fit the landmark frame of YuNet's keypoints (fflm.detect.frame) on 300-W train faces.

    python -m fflm.train.fit_frame [--train ../shared/data/300w/train] [--out fflm/assets/yunet_frame.json]

YuNet runs on each training image; its best detection that overlaps the landmarks' box gives the keypoints.
The map's residual on 300-W val is printed (centre and side error as a fraction of the true side).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fflm.detect.frame import FRAME_ASSET, FaceFrame
from fflm.geometry import box_iou, points_box
from fflm.imageio import read_image
from fflm.annotations import read_annotations

HERE = Path(__file__).resolve().parents[2]


def keypoint_pairs(folder: Path, detector) -> tuple[np.ndarray, np.ndarray]:
    """(YuNet keypoints [M, 5, 2], 68 landmarks [M, 68, 2]) of the faces YuNet finds in a 300-W folder."""
    kps, pts = [], []
    for s in read_annotations(folder, 68):
        dets = detector.detect(read_image(s.image))
        if not dets:
            continue
        iou = box_iou(np.stack([d.box for d in dets]), points_box(s.points)[None])[:, 0]
        if iou.max() >= 0.3:
            kps.append(dets[int(iou.argmax())].keypoints)
            pts.append(s.points)
    return np.array(kps), np.array(pts)


def residual(frame: FaceFrame, kps: np.ndarray, pts: np.ndarray) -> dict:
    err_c, err_s = [], []
    for k, p in zip(kps, pts):
        box = frame.landmark_box(k)
        tight = points_box(p)
        side = (tight[2:] - tight[:2]).max()
        err_c.append(np.linalg.norm((box[:2] + box[2:]) / 2 - (tight[:2] + tight[2:]) / 2) / side)
        err_s.append(abs((box[2] - box[0]) - side) / side)
    return {"faces": len(kps), "centre_error": float(np.median(err_c)), "side_error": float(np.median(err_s))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", default=str(HERE.parent / "shared" / "data" / "300w" / "train"))
    ap.add_argument("--val", default=str(HERE.parent / "shared" / "data" / "300w" / "val"))
    ap.add_argument("--out", default=str(HERE / "fflm" / "assets" / FRAME_ASSET))
    a = ap.parse_args(argv)
    from fflm.detect import make_detector

    det = make_detector("yunet", tiles="off")
    kps, pts = keypoint_pairs(Path(a.train), det)
    frame = FaceFrame.fit(kps, pts)
    report = {"train": residual(frame, kps, pts), "val": residual(frame, *keypoint_pairs(Path(a.val), det))}
    Path(a.out).write_text(json.dumps({"detector": "yunet_2026may.onnx", "fitted_on": "300-W train",
                                       "faces": len(kps), "coef": np.round(frame.coef, 6).tolist(), **report}) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
