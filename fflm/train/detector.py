"""Train the built-in detector: `python -m fflm.train.detector --out RUN_DIR [--epochs N] [--export FILE]`.

Checkpoints (`last.pt`: model, optimiser, step, sampler state) are written to RUN_DIR every epoch and a run
resumes from them automatically; `best.safetensors` keeps the epoch with the best validation score, and
`--export` copies it (or, with `--export-only`, just exports without training).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from fflm.train.detector_data import KeypointBoxModel, Sampler, load_300w, load_scenes
from fflm.detect.metrics import DetectionTally
from fflm.detect.model import DetectorConfig, FaceNet
from fflm.detect.run import infer
from fflm.detect.tiling import detect_tiled
from fflm.train.detector_targets import detector_loss, level_targets
from fflm.detect.weights import load_detector, save_detector
from fflm.train.average import moving_average


def make_batch(sampler: Sampler, n: int, strides: tuple[int, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    imgs, tgts = [], [[] for _ in strides]
    for _ in range(n):
        img, boxes, ign = sampler()
        imgs.append(img)
        for k, s in enumerate(strides):
            tgts[k].append(level_targets(boxes, ign, img.shape[:2], s))
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float()
    return x, [torch.from_numpy(np.stack(t)) for t in tgts]


def validate(model: FaceNet, photos: list, proxy: int = 640, min_precision: float = 0.9) -> dict:
    """On held-out scene photos, through the shipped pipeline (proxy and coarse passes, tiles off): recall of faces
    ≥ 32 px and ≥ 20 px and precision at score 0.5, and the best recall ≥ 32 px among score thresholds
    (0.30-0.80) that keep precision ≥ `min_precision`, with that threshold (the operating point the export keeps)."""
    model.eval()
    found = []
    for p in photos:
        boxes, scores = detect_tiled(lambda small: infer(model, small, 0.3), p.decode(), proxy, "off", coarse=True)
        found.append((boxes, scores, p))
    model.train()
    out = {"r32_at_p": 0.0, "threshold": None}
    for t in np.round(np.arange(0.3, 0.81, 0.05), 2):
        tally = DetectionTally(min_size=20)
        for boxes, scores, p in found:
            tally.add(boxes[scores >= t], p.boxes, p.ignore)
        if t == 0.5:
            out.update(r32=tally.recall(32), r20=tally.recall(20), prec=tally.precision())
        if tally.precision() >= min_precision and tally.recall(32) > out["r32_at_p"]:
            out.update(r32_at_p=tally.recall(32), threshold=float(t))
    return out


def export(best: Path, target: str | Path, threshold: float | None, w300: str | Path | None = None) -> None:
    """Copy the best epoch's model to `target`, with its default score threshold in the configuration (None: the
    one its validation chose, else 0.5) and, given 300-W faces, the measured relation of its boxes to the
    landmarks' tight box (`landmark_box`)."""
    model, meta = load_detector(best)
    model.config.extra["threshold"] = threshold or meta.get("val", {}).get("threshold") or 0.5
    save_detector(target, model, meta)
    params = calibrate_landmark_box(target, w300) if w300 else None
    if params is not None:
        model.config.extra["landmark_box"] = params
        save_detector(target, model, meta)


def calibrate_landmark_box(detector: str | Path, w300: str | Path, every: int = 4) -> list[float] | None:
    """fit_landmark_box over every `every`-th 300-W face: the detection overlapping its landmark box most
    (None when the detector finds none of them)."""
    from fflm.annotations import read_annotations
    from fflm.detect.builtin import BuiltinDetector, fit_landmark_box
    from fflm.geometry import best_overlap, points_box
    from fflm.imageio import read_image

    det = BuiltinDetector(detector, tiles="off")
    pairs = []
    for sample in read_annotations(w300, 68)[::every]:
        tight = points_box(sample.points)
        boxes, _ = det.boxes(read_image(sample.image))
        best = best_overlap(boxes, tight, min_iou=0.3)
        if best is not None:
            pairs.append((boxes[best], tight))
    if not pairs:
        print("landmark box: the detector found none of the 300-W faces; not stored", flush=True)
        return None
    params = fit_landmark_box(pairs)
    print(f"landmark box from {len(pairs)} 300-W faces: scale, dx, dy = {params}", flush=True)
    return params


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    shared = Path(__file__).resolve().parents[3] / "shared" / "data"  # the checkout's sibling, as in CI
    ap.add_argument("--scenes", default=str(shared / "scenes"))
    ap.add_argument("--w300", default=str(shared / "300w" / "train"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--steps", type=int, default=250, help="steps per epoch")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--rotate", type=float, default=0.0, help="tilt half of the canvases by up to this many degrees")
    ap.add_argument("--occlude", type=float, default=0.0, help="chance of each training face to be partly covered")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="validate and export a moving average of the weights with this decay per step (0: off)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--widths", default="16,24,32,48,64", help="backbone channels at strides 2, 4, 8, 16, 32")
    ap.add_argument("--fpn", type=int, default=32, help="channels of the FPN levels and heads")
    ap.add_argument("--strides", default="8,32", help="strides of the heads (of 8, 16, 32)")
    ap.add_argument("--init", default=None, help="start from this detector file's weights (a fresh schedule: fine-tuning)")
    ap.add_argument("--export", default=None, help="write the best epoch's model here (e.g. fflm/assets/fflm-detector.safetensors)")
    ap.add_argument("--export-only", action="store_true", help="export without training")
    ap.add_argument("--threshold", type=float, default=None,
                    help="the exported model's default score threshold (default: the one validation chose, else 0.5)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(1)  # the data pipeline shares the one core
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.export_only:
        export(out / "best.safetensors", a.export, a.threshold, a.w300)
        return
    torch.manual_seed(0)
    train_p, val_p, pairs = load_scenes(a.scenes)
    box_model = KeypointBoxModel.fit(pairs)
    portraits = load_300w(a.w300, box_model)
    print(f"scenes: {len(train_p)} train, {len(val_p)} val; 300-W: {len(portraits)}; box model {box_model.params.round(3).tolist()}",
          flush=True)
    config = DetectorConfig(widths=tuple(int(w) for w in a.widths.split(",")), fpn=a.fpn,
                            strides=tuple(int(s) for s in a.strides.split(",")),
                            extra={"keypoint_box": box_model.params.tolist()})
    model = FaceNet(config)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    sampler = Sampler(train_p, portraits, a.size, rotate=a.rotate, occlude=a.occlude)
    total = a.epochs * a.steps
    step, epoch, best = 0, 0, -1.0
    ckpt = out / "last.pt"
    if a.init and not ckpt.exists():
        own = model.state_dict()
        state = {k: v for k, v in load_detector(a.init)[0].state_dict().items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(state, strict=False)
        fresh = sorted(set(own) - set(state))
        print(f"initialised from {a.init}" + (f"; new: {', '.join(fresh)}" if fresh else ""), flush=True)
    ema = moving_average(model, a.ema) if a.ema else None
    served = ema.module if ema is not None else model  # what is validated and exported
    if ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        if ema is not None:
            ema.load_state_dict(st["ema"])
        step, epoch, best = st["step"], st["epoch"], st["best"]
        sampler.rng.bit_generator.state = st["rng"]
        print(f"resumed at epoch {epoch}, step {step}", flush=True)
    model.train()
    while epoch < a.epochs:
        t0, sums = time.time(), {"loss": 0.0, "cls": 0.0, "box": 0.0}
        for _ in range(a.steps):
            lr = a.lr * min(1.0, (step + 1) / 300) * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))
            for g in opt.param_groups:
                g["lr"] = lr
            x, tg = make_batch(sampler, a.batch, config.strides)
            losses = detector_loss(model(x), tg)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            for k in sums:
                sums[k] += float(losses[k].detach()) / a.steps
        epoch += 1
        v = validate(served, val_p)
        raw = f" (raw weights {validate(model, val_p)['r32_at_p']:.3f})" if ema is not None else ""
        score = v["r32_at_p"]
        if score > best:
            best = score
            save_detector(out / "best.safetensors", served,
                          {"epoch": epoch, "step": step, "val": v, "data": "scenes (WIDER FACE, face-mask, negatives) + 300-W train"})
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "epoch": epoch, "best": best,
                    "rng": sampler.rng.bit_generator.state, "ema": ema.state_dict() if ema is not None else None},
                   out / "last.tmp")
        (out / "last.tmp").replace(ckpt)
        print(f"epoch {epoch} step {step} lr {lr:.5f} loss {sums['loss']:.4f} cls {sums['cls']:.4f} box {sums['box']:.4f} "
              f"val@0.5 r32 {v['r32']:.3f} r20 {v['r20']:.3f} prec {v['prec']:.3f}; r32 at prec >= 0.9 {v['r32_at_p']:.3f} "
              f"(threshold {v['threshold']}){raw} best {best:.3f} ({time.time() - t0:.0f} s)",
              flush=True)
    if a.export:
        export(out / "best.safetensors", a.export, a.threshold, a.w300)


if __name__ == "__main__":
    main()
