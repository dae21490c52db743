"""Train the detector's second stage (fflm.detect.verifier) for a trained detector file:
`python -m fflm.train.detector_verifier --detector detector --out RUN_DIR --export FILE`.

Its examples are the detector's own candidates: every training photo (and its mirror image) goes through the
shipped passes (proxy and coarse) at a low score floor, and each candidate box is cut from the image that pass
saw. A candidate overlapping a human box at IoU ≥ 0.5 is a face, one under 0.3 with every box and ignore region
is not; the rest only teach the box correction, which every candidate at IoU ≥ 0.3 with a face learns (towards
that face's box). Jittered human boxes add faces the first stage missed. 300-W crops add large, sharp faces.
The held-out scene photos then choose the weight alpha of the two scores and the threshold, as for the first
stage (`fflm.train.detector.validate`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from fflm.train.detector_data import KeypointBoxModel, Photo, load_300w, load_scenes, mirror_boxes, photometric
from fflm.detect.model import FaceNet
from fflm.detect.run import infer, unscale_boxes
from fflm.detect.tiling import run_proxy
from fflm.train.detector import validate
from fflm.detect.verifier import FaceVerifier, VerifierConfig, box_deltas, crops_tensor, face_crops
from fflm.detect.weights import load_detector, save_detector
from fflm.geometry import box_iou, face_size


def label_candidates(boxes: np.ndarray, faces: np.ndarray, neutral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate box: its label, 1 (IoU ≥ 0.5 with a face), 0 (IoU < 0.3 with every face and neutral region)
    or -1 (neither: no face score is learnt from it), and the face its box should move to (the best-overlapping
    one at IoU ≥ 0.3, else -1)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    faces, neutral = np.asarray(faces, np.float64).reshape(-1, 4), np.asarray(neutral, np.float64).reshape(-1, 4)
    y, target = np.full(len(boxes), -1, np.int64), np.full(len(boxes), -1, np.int64)
    if not len(boxes):
        return y, target
    face_iou = box_iou(boxes, faces) if len(faces) else np.zeros((len(boxes), 1))
    every = np.concatenate([faces, neutral])
    any_iou = box_iou(boxes, every).max(1) if len(every) else np.zeros(len(boxes))
    y[any_iou < 0.3] = 0
    y[face_iou.max(1) >= 0.5] = 1
    near = face_iou.max(1) >= 0.3
    target[near] = face_iou[near].argmax(1)
    return y, target


def jitter_box(b: np.ndarray, rng: np.random.Generator, shift: float = 0.08, scale: float = 0.1) -> np.ndarray:
    """A box moved by shift × its size and resized by exp(N(0, scale)): how the first stage's boxes scatter."""
    w, h = b[2] - b[0], b[3] - b[1]
    cx, cy = (b[0] + b[2]) / 2 + rng.normal(0, shift) * w, (b[1] + b[3]) / 2 + rng.normal(0, shift) * h
    f = math.exp(rng.normal(0, scale))
    return np.array([cx - w * f / 2, cy - h * f / 2, cx + w * f / 2, cy + h * f / 2])


def harvest(model: FaceNet, photos: list[Photo], config: VerifierConfig, rng: np.random.Generator, floor: float = 0.2,
            mirror: bool = True, jitters: int = 2, min_face: float = 8.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops [K, S, S, 3], labels [K] (1, 0, or -1: box only) and box deltas [K, 4] (NaN: none) from the first
    stage's passes over `photos` (see the module doc)."""
    crops, labels, deltas = [], [], []

    def add(image: np.ndarray, boxes: np.ndarray, y: np.ndarray, targets: np.ndarray | None) -> None:
        crops.append(face_crops(image, boxes, config))
        labels.append(y)
        deltas.append(box_deltas(boxes, targets) if targets is not None else np.full((len(boxes), 4), np.nan))

    for p in photos:
        img, faces, neutral = p.decode(), p.boxes.reshape(-1, 4), p.ignore.reshape(-1, 4)
        views = [(img, faces, neutral)]
        if mirror:
            w = img.shape[1]
            views.append((np.ascontiguousarray(img[:, ::-1]), mirror_boxes(faces, w), mirror_boxes(neutral, w)))
        for view, vfaces, vneutral in views:
            passes = []

            def run(small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                boxes, scores = infer(model, small, floor)
                passes.append((small, boxes))
                return boxes, scores

            run_proxy(run, view, model.config.proxy, coarse=True)
            for small, boxes in passes:
                sx, sy = small.shape[1] / view.shape[1], small.shape[0] / view.shape[0]
                here = unscale_boxes(vfaces, 1 / sx, 1 / sy)  # the human boxes in this pass's pixels
                y, target = label_candidates(unscale_boxes(boxes, sx, sy), vfaces, vneutral)
                moved = target >= 0
                if moved.any():  # faces and near-misses: a face score where it is clear, and the box correction
                    add(small, boxes[moved], y[moved], here[target[moved]])
                if ((y == 0) & ~moved).any():
                    add(small, boxes[(y == 0) & ~moved], y[(y == 0) & ~moved], None)
                # the human boxes jittered: faces whether or not the first stage found them
                big = here[face_size(here) >= min_face]
                if len(big) and jitters:
                    truth = np.repeat(big, jitters, axis=0)
                    add(small, np.array([jitter_box(b, rng) for b in truth]), np.ones(len(truth), np.int64), truth)
    if not crops:
        return np.zeros((0, config.crop, config.crop, 3), np.uint8), np.zeros(0, np.int64), np.zeros((0, 4))
    return np.concatenate(crops), np.concatenate(labels), np.concatenate(deltas)


def train_verifier(crops: np.ndarray, labels: np.ndarray, deltas: np.ndarray, verifier: FaceVerifier, steps: int,
                   lr: float = 2e-3, batch: int = 64, seed: int = 0, box_weight: float = 2.0, log=print) -> FaceVerifier:
    """Binary cross-entropy on the labelled crops plus `box_weight` × smooth L1 on the box deltas where known,
    with mirror and photometric jitter; AdamW, cosine schedule."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(verifier.parameters(), lr=lr, weight_decay=1e-4)
    y_all = torch.from_numpy(labels.astype(np.float32))
    d_all = torch.from_numpy(deltas.astype(np.float32))
    verifier.train()
    t0, running = time.time(), 0.0
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = rng.integers(0, len(crops), batch)
        flip = rng.random(batch) < 0.5
        x = np.stack([photometric(c[:, ::-1] if f else c, rng) for c, f in zip(crops[idx], flip)])
        out = verifier(crops_tensor(np.ascontiguousarray(x)))
        y, d = y_all[idx], d_all[idx].clone()
        d[torch.from_numpy(flip), 0] *= -1  # a mirrored crop's box moves the other way in x
        scored, boxed = y >= 0, ~d.isnan().any(1)
        loss = out.new_zeros(())
        if scored.any():
            loss = loss + F.binary_cross_entropy_with_logits(out[scored, 0], y[scored])
        if boxed.any():
            loss = loss + box_weight * F.smooth_l1_loss(out[boxed, 1:], d[boxed], beta=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += loss.item() / 250
        if (step + 1) % 250 == 0:
            log(f"step {step + 1}/{steps} loss {running:.4f} ({time.time() - t0:.0f} s)")
            running = 0.0
    return verifier.eval()


def main(argv: list[str] | None = None) -> None:
    shared = Path(__file__).resolve().parents[3] / "shared" / "data"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="detector", help="the trained first stage (a file; default: the shipped detector)")
    ap.add_argument("--scenes", default=str(shared / "scenes"))
    ap.add_argument("--w300", default=str(shared / "300w" / "train"))
    ap.add_argument("--portraits", type=int, default=500, help="300-W training faces to add (every n-th)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--crop", type=int, default=VerifierConfig.crop)
    ap.add_argument("--grow", type=float, default=VerifierConfig.grow)
    ap.add_argument("--widths", default=",".join(map(str, VerifierConfig.widths)))
    ap.add_argument("--alphas", default="0.5,0.6,0.7,0.8", help="weights of the first stage's score to choose from")
    ap.add_argument("--seed", type=int, default=0, help="seed of the jittered boxes, the batches and the initial weights")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--export", default=None, help="write the detector with this second stage here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model, meta = load_detector(a.detector)
    model.verifier = None  # candidates come from the first stage alone
    config = VerifierConfig(crop=a.crop, grow=a.grow, widths=tuple(int(w) for w in a.widths.split(",")))
    train_p, val_p, _ = load_scenes(a.scenes)
    box_model = KeypointBoxModel(np.array(model.config.extra["keypoint_box"]))
    portraits = load_300w(a.w300, box_model)
    portraits = portraits[:: max(1, len(portraits) // a.portraits)] if a.portraits else []
    rng = np.random.default_rng(a.seed)
    t0 = time.time()
    crops, labels, deltas = harvest(model, train_p + portraits, config, rng)
    print(f"{len(labels)} crops from {len(train_p)} scene photos and {len(portraits)} 300-W faces: "
          f"{int((labels == 1).sum())} faces, {int((labels == 0).sum())} not, "
          f"{int((~np.isnan(deltas).any(1)).sum())} with box corrections ({time.time() - t0:.0f} s)", flush=True)
    before = validate(model, val_p)  # the first stage alone (after harvesting: validate leaves the model in train mode)
    print(f"first stage alone: recall ≥ 32 px {before['r32_at_p']:.3f} at precision ≥ 0.9 (threshold {before['threshold']})",
          flush=True)
    torch.manual_seed(a.seed)
    verifier = FaceVerifier(config, model.config.mean, model.config.std)
    train_verifier(crops, labels, deltas, verifier, a.steps, a.lr, seed=a.seed, log=lambda m: print(m, flush=True))
    model.verifier = verifier
    model.config.verifier = config.to_dict()
    def use_alpha(alpha: float) -> None:  # the file's configuration and the network's own copy of it
        model.config.verifier["alpha"] = alpha
        verifier.config = VerifierConfig.from_dict(model.config.verifier)

    results = {}
    for alpha in (float(v) for v in a.alphas.split(",")):
        use_alpha(alpha)
        results[alpha] = validate(model, val_p)
        r = results[alpha]
        print(f"alpha {alpha}: recall ≥ 32 px {r['r32_at_p']:.3f} at precision ≥ 0.9 (threshold {r['threshold']}); "
              f"at 0.5: r32 {r['r32']:.3f} r20 {r['r20']:.3f} precision {r['prec']:.3f}", flush=True)
    alpha = max(results, key=lambda k: results[k]["r32_at_p"])
    use_alpha(alpha)
    model.config.extra["threshold"] = results[alpha]["threshold"] or model.config.extra.get("threshold", 0.5)
    meta = {**meta, "verifier": {"steps": a.steps, "lr": a.lr, "seed": a.seed, "crops": len(labels), "faces": int((labels == 1).sum()),
                                 "val": {str(k): v for k, v in results.items()}, "first_stage_val": before}}
    save_detector(out / "best.safetensors", model, meta)
    (out / "results.json").write_text(json.dumps(meta["verifier"], indent=2))
    print(f"chose alpha {alpha}, threshold {model.config.extra['threshold']}: {out / 'best.safetensors'}", flush=True)
    if a.export:
        save_detector(a.export, model, meta)


if __name__ == "__main__":
    main()
