"""The built-in face detector against YuNet, in one run: the figures its card reports.

    python benchmarks/detector.py [--shared ../shared] [--detector-model M] [--weights W] [--threads 1] [--json out.json]

1. Held-out scene photos (the fixed validation split of shared/data/scenes, never trained on): recall and
   precision at IoU 0.5 against the human boxes of faces >= 20 px (smaller faces, ignore regions and YuNet-only
   faces are neutral: a detection on them is neither right nor wrong), by face size; built-in and YuNet side by
   side, both through fflm's proxy (long side min(640, 2x photo)).
2. Small faces in big photos: an 8K mosaic (7680x4320) of held-out scene photos, each enlarged 2x, so faces are
   20-600 px: recall of faces >= 60 px and >= 40 px and precision with --tiles off, auto and 4.
3. Detector time per photo (median, `--threads` torch threads; `--rounds` rounds with the detectors taking turns,
   the median over the rounds and their range): a 640x480 photo, and a 3840x2160 (4K) photo from an array (proxy
   by area resize) and from its JPEG file (reduced decode), tiles off.
4. shared/data/300w/val (one face per crop): the fraction of faces found (a detection with IoU >= 0.5 to the
   face box derived from the landmarks, the box style the detector learned) and, with landmark weights, the
   inter-ocular NME (%) with detector boxes against boxes from the landmarks (fflm.evaluate).
YuNet runs only when shared/models/yunet_2026may.onnx exists.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from fflm.detect import make_detector
from fflm.detect.data import KeypointBoxModel, five_points_68, load_scenes, scene_splits
from fflm.detect.metrics import DetectionTally
from fflm.geometry import box_iou
from fflm.imageio import read_image
from fflm.pts import read_pts

HERE = Path(__file__).resolve().parent


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95 %) of a proportion k/n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def sweep(det, photos, thresholds) -> list[dict]:
    """Recall >= 32 px and precision at each threshold, from one run of `det` at a threshold below them all."""
    found = [(np.array([d.box for d in det.detect(p.decode())]).reshape(-1, 4),
              np.array([d.score for d in det.detect(p.decode())])) for p in photos]
    rows = []
    for t in thresholds:
        tally = DetectionTally(min_size=20)
        for p, (b, s) in zip(photos, found):
            tally.add(b[s >= t], p.boxes, p.ignore)
        rows.append({"threshold": t, "recall_32": tally.recall(32), "recall_20": tally.recall(20),
                     "precision": tally.precision(), "faces_32": tally.count(32)})
    return rows


def scene_figures(det, photos) -> dict:
    """Figures over all held-out photos, and per source (WIDER FACE, face-mask: their box styles differ)."""
    tallies = {"all": DetectionTally(min_size=20), "wider": DetectionTally(min_size=20), "mask": DetectionTally(min_size=20)}
    for p in photos:
        boxes = np.array([d.box for d in det.detect(p.decode())]).reshape(-1, 4)
        for key, tally in tallies.items():
            if key == "all" or p.name.startswith(key):
                tally.add(boxes, p.boxes, p.ignore)
    return {k: {"recall_20": t.recall(20), "recall_20_32": t.recall(20, 32), "recall_32": t.recall(32),
                "recall_64": t.recall(64), "precision": t.precision(), "faces_20": t.count(20),
                "faces_32": t.count(32), "tp": t.tp, "fp": t.fp} for k, t in tallies.items()}


def mosaic(photos, width: int = 7680, height: int = 4320, zoom: float = 2.0):
    """A big group photo from scene photos (enlarged by `zoom`), with their boxes and ignore regions."""
    canvas = np.full((height, width, 3), 110, np.uint8)
    boxes, ignore = [], []
    x = y = row_h = 0
    for p in photos:
        img = p.decode()
        img = cv2.resize(img, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
        h, w = img.shape[:2]
        if x + w > width:
            x, y, row_h = 0, y + row_h, 0
        if y + h > height:
            break
        canvas[y : y + h, x : x + w] = img
        for src, dst in ((p.boxes, boxes), (p.ignore, ignore)):
            for b in src:
                dst.append((np.asarray(b) + 0.5) * zoom - 0.5 + [x, y, x, y])
        x, row_h = x + w, max(row_h, h)
    return canvas, np.array(boxes).reshape(-1, 4), np.array(ignore).reshape(-1, 4)


def tiling_figures(name: str, model, photos) -> list[dict]:
    img, boxes, ignore = mosaic(photos)
    rows = []
    for tiles in ("off", "auto", 4):
        det = make_detector(name, model, tiles=tiles)
        t0 = time.perf_counter()
        found = np.array([d.box for d in det.detect(img)]).reshape(-1, 4)
        seconds = time.perf_counter() - t0
        row = {"detector": name, "tiles": str(tiles), "seconds": seconds}
        for lo in (40, 60):
            t = DetectionTally(min_size=lo)
            t.add(found, boxes, ignore)
            row[f"recall_{lo}"], row[f"faces_{lo}"] = t.recall(lo), t.count(lo)
            if lo == 40:
                row["precision"] = t.precision()
        rows.append(row)
    return rows


def median_ms(fn, repeat: int = 9) -> tuple[float, float]:
    """Median wall-clock and process CPU milliseconds of fn() (CPU time is what a busy machine cannot inflate)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


def timing(name: str, model, photo640: np.ndarray, photo4k: np.ndarray, path4k: Path) -> dict:
    det = make_detector(name, model, tiles="off")
    return {"detector": name, "ms_640": median_ms(lambda: det.detect(photo640)),
            "ms_4k_array": median_ms(lambda: det.detect(photo4k)),
            "ms_4k_file": median_ms(lambda: det.detect_file(path4k)),
            "ms_4k_decode_full": median_ms(lambda: read_image(path4k), 3)}


def timing_rounds(dets: list, rounds: int, *photos) -> list[dict]:
    """`timing` for every detector, `rounds` times in turn (a shared machine's speed drifts between minutes, so
    turns keep the detectors comparable); per detector and figure the median over the rounds, and the spread."""
    runs = [[timing(n, m, *photos) for n, m in dets] for _ in range(rounds)]
    out = []
    for i, (n, _) in enumerate(dets):
        row: dict = {"detector": n}
        for key in runs[0][i]:
            if key.startswith("ms_"):
                per = [r[i][key] for r in runs]
                row[key] = tuple(statistics.median(v[j] for v in per) for j in range(2))
                row[key + "_range"] = (min(v[0] for v in per), max(v[0] for v in per))
        out.append(row)
    return out


def w300_found(det, items, box_model) -> dict:
    found = 0
    for img_path, pts in items:
        truth = box_model.box(five_points_68(pts))
        dets = det.detect(read_image(img_path))
        if dets:
            found += box_iou(np.stack([d.box for d in dets]), truth[None]).max() >= 0.5
    return {"found": found / len(items), "faces": len(items)}


def w300_nme(weights: str | None, name: str, model, val: Path) -> dict | None:
    from fflm.evaluate import evaluate
    from fflm.pipeline import Landmarker
    from fflm.annotations import read_annotations
    from fflm.weights import DEFAULT_WEIGHTS

    if weights is None and not Path(DEFAULT_WEIGHTS).is_file():
        return None
    lm = Landmarker(weights, device="cpu", detector=make_detector(name, model, tiles="off"))
    samples = read_annotations(val)
    ref = evaluate(lm, samples, boxes="landmarks")
    got = evaluate(lm, samples, boxes="detector")
    finite = np.isfinite(got.nme_io)
    return {"nme_landmark_boxes": 100 * float(np.mean(ref.nme_io)),
            "nme_detector_boxes": 100 * float(np.mean(got.nme_io[finite])),
            "nme_landmark_boxes_same_faces": 100 * float(np.mean(ref.nme_io[finite])),
            "not_found": int((~finite).sum())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(HERE.parents[1] / "shared"))
    ap.add_argument("--detector-model", default=None, help="built-in detector file (default: the shipped one)")
    ap.add_argument("--weights", default=None, help="landmark weights for the NME figures (default: shipped)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N photos and crops (a quick check)")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds, the detectors taking turns")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    shared = Path(a.shared)
    yunet = shared / "models" / "yunet_2026may.onnx"
    dets = [("builtin", a.detector_model)] + ([("yunet", str(yunet))] if yunet.is_file() else [])
    _, val_photos, _ = load_scenes(shared / "data" / "scenes")
    builtin = make_detector("builtin", a.detector_model)
    box_model = KeypointBoxModel(builtin.model.config.extra["keypoint_box"])
    val300 = shared / "data" / "300w" / "val"
    items = [(p.with_suffix(".jpg"), read_pts(p)) for p in sorted(val300.glob("*.pts"))]
    if a.limit:
        val_photos, items = val_photos[: a.limit], items[: a.limit]
    report: dict = {"threads": a.threads, "rounds": a.rounds, "scene_photos": len(val_photos), "torch": torch.__version__,
                    "opencv": cv2.__version__}

    report["scenes"] = {n: scene_figures(make_detector(n, m, tiles="off"), val_photos) for n, m in dets}
    report["tiling"] = [r for n, m in dets for r in tiling_figures(n, m, val_photos)]
    with tempfile.TemporaryDirectory() as tmp:
        big = cv2.resize(read_image(items[0][0]), (2160, 2160), interpolation=cv2.INTER_CUBIC)
        photo4k = np.zeros((2160, 3840, 3), np.uint8)
        photo4k[:, 840:3000] = big
        path4k = Path(tmp) / "photo_4k.jpg"
        cv2.imwrite(str(path4k), photo4k[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        photo640 = cv2.resize(val_photos[0].decode(), (640, 480), interpolation=cv2.INTER_LINEAR)
        report["timing"] = timing_rounds(dets, a.rounds, photo640, photo4k, path4k)
    report["w300_found"] = {n: w300_found(make_detector(n, m, tiles="off"), items, box_model) for n, m in dets}
    report["w300_nme"] = {n: w300_nme(a.weights, n, m, val300) for n, m in dets}
    print_report(report)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2, default=float))
    return 0


def print_report(r: dict) -> None:
    p = print
    p(f"fflm detector benchmark (torch {r['torch']}, OpenCV {r['opencv']}, {r['threads']} thread(s))")
    p(f"\n1. held-out scene photos ({r['scene_photos']}), IoU 0.5, faces >= 20 px")
    p(f"{'detector':10} {'faces>=20':>9} {'R 20-32':>8} {'R>=20':>7} {'R>=32':>7} {'R>=64':>7} {'precision':>9} {'TP':>5} {'FP':>5}")
    for n, src, s in [(n, k, s) for n, per in r["scenes"].items() for k, s in per.items()]:
        n = n if src == "all" else f"  {src}"
        p(f"{n:10} {s['faces_20']:9d} {s['recall_20_32']:8.3f} {s['recall_20']:7.3f} {s['recall_32']:7.3f} "
          f"{s['recall_64']:7.3f} {s['precision']:9.3f} {s['tp']:5d} {s['fp']:5d}")
    p("\n2. small faces in an 8K mosaic of held-out photos (7680x4320), IoU 0.5")
    p(f"{'detector':10} {'tiles':>5} {'faces>=40':>9} {'R>=40':>7} {'R>=60':>7} {'precision':>9} {'seconds':>8}")
    for t in r["tiling"]:
        p(f"{t['detector']:10} {t['tiles']:>5} {t['faces_40']:9d} {t['recall_40']:7.3f} {t['recall_60']:7.3f} "
          f"{t['precision']:9.3f} {t['seconds']:8.2f}")
    p(f"\n3. detector time per photo, median ms over {r.get('rounds', 1)} round(s), wall / process CPU (tiles off); "
      "wall range over the rounds below")
    p(f"{'detector':10} {'640x480':>13} {'4K array':>13} {'4K file':>13} {'(4K full decode)':>17}")

    def wc(v) -> str:
        return f"{v[0]:6.1f}/{v[1]:6.1f}"

    for t in r["timing"]:
        p(f"{t['detector']:10} {wc(t['ms_640']):>13} {wc(t['ms_4k_array']):>13} {wc(t['ms_4k_file']):>13} "
          f"{wc(t['ms_4k_decode_full']):>17}")
        if "ms_640_range" in t:
            p(f"{'':10} " + " ".join(f"{'%.1f-%.1f' % t[k + '_range']:>13}" for k in ("ms_640", "ms_4k_array", "ms_4k_file"))
              + f" {'%.1f-%.1f' % t['ms_4k_decode_full_range']:>17}")
    p("\n4. 300-W val (554 crops, one face each)")
    p(f"{'detector':10} {'found':>6} {'NME det boxes':>14} {'NME lm boxes':>13} {'(same faces)':>13} {'missed':>7}")
    for n, f in r["w300_found"].items():
        e = r["w300_nme"].get(n)
        tail = (f"{e['nme_detector_boxes']:14.3f} {e['nme_landmark_boxes']:13.3f} {e['nme_landmark_boxes_same_faces']:13.3f} "
                f"{e['not_found']:7d}") if e else f"{'(no landmark weights)':>30}"
        p(f"{n:10} {f['found']:6.3f} {tail}")


if __name__ == "__main__":
    sys.exit(main())
