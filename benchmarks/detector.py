"""Every shipped detector (YuNet, the default, and the built-in one) side by side, and the landmark figures that
depend on the detector, in one run: the figures of docs/detector.md and the detector cards.

    python benchmarks/detector.py [--shared ../shared] [--weights W] [--threads 1] [--step 12] [--sections S,...]
                                  [--json out.json]

1. splits: scene photos no shipped detector was trained on (fflm.train.detector_data.scene_splits): on the choice part,
   recall >= 32 px and precision per smallest face (MIN_FACES) and threshold (YuNet's default pair, fflm.choices.MIN_FACE
   and YUNET_THRESHOLD, has the highest recall with precision >= 0.95 there); on the report part, recall >= 32 px and
   precision at the detector's own settings with 95 % Wilson intervals. IoU 0.5, greedy matching; human boxes
   >= 20 px are the truth, smaller faces, ignore regions and YuNet-only faces neutral.
2. tiling: an 8K mosaic (7680x4320) of the report photos, each enlarged 2x: recall >= 40 / 60 px and precision with
   --tiles off, auto and 4.
3. timing: detector time per photo (median over `--rounds` rounds, the detectors taking turns; wall and process CPU):
   640x480, and 3840x2160 from an array and from its JPEG file (reduced decode); tiles off, rotations none; YuNet
   also with OpenCV's runner (yunet-opencv) where ONNX Runtime serves it by default.
4. w300: 300-W val: the fraction of faces found: a detection whose landmark box (the face frame it gives the
   landmark stage) has IoU >= 0.5 with the truth landmarks' box.
5. orientations: the default Landmarker on every `--step`-th 300-W val face, the photo turned by 90/180/270° (no
   EXIF tag) or rolled by ±15/30/45° about its centre: faces found (best face NME < 20 %) and their NME.
6. yaw: AFLW2000-3D faces found per yaw range, for each detector (as 4), with --rotations none and auto.
7. loose: NME with face boxes 0.6-3x the landmarks' tight box.
8. quality: Face.quality of 300-W val faces against background crops of the report photos and against YuNet's false
   detections there (threshold 0.3): ROC AUC and the fractions below 0.5.
9. video: faces per frame in frames 28-32 of shared/data/samples/frames.mp4, each frame detected on its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from fflm.detect import make_detector
from fflm.detect.yunet import YuNetDetector
from fflm.train.detector_data import scene_splits
from fflm.detect.metrics import DetectionTally
from fflm.geometry import box_iou, face_size, points_box
from fflm.imageio import read_image
from fflm.pts import read_pts

HERE = Path(__file__).resolve().parent

MIN_FACES = (0.0, 16.0, 20.0)  # smallest face sizes (px) the choice sweep tries beside the thresholds


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95 %) of a proportion k/n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def sweep(det, photos, thresholds, min_faces=MIN_FACES) -> list[dict]:
    """Recall >= 32 px and precision at each smallest face size and threshold, from one run of `det` at a threshold
    below them all and no smallest size."""
    found = []
    for p in photos:
        dets = det.detect(p.decode())
        found.append((np.array([d.box for d in dets]).reshape(-1, 4), np.array([d.score for d in dets])))
    rows = []
    for m in min_faces:
        for t in thresholds:
            tally = DetectionTally(min_size=20)
            for p, (b, s) in zip(photos, found):
                tally.add(b[(s >= t) & (face_size(b) >= m)], p.boxes, p.ignore)
            rows.append({"min_face": m, "threshold": t, "recall_32": tally.recall(32), "recall_20": tally.recall(20),
                         "precision": tally.precision(), "faces_32": tally.count(32)})
    return rows


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
        det = make_detector(name, model, tiles=tiles, rotations="none")
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


def timing(label: str, options: dict, photo640: np.ndarray, photo4k: np.ndarray, path4k: Path) -> dict:
    """The detector `make_detector(**options)` on the photos, as `label`."""
    det = make_detector(**options, tiles="off", rotations="none")
    auto = make_detector(**options, tiles="off")  # --rotations auto: more passes when no face is sure
    return {"detector": label, "ms_640": median_ms(lambda: det.detect(photo640)),
            "ms_640_auto": median_ms(lambda: auto.detect(photo640)),
            "faces_640": len(det.detect(photo640)), "best_640": max((d.score for d in det.detect(photo640)), default=0.0),
            "ms_4k_array": median_ms(lambda: det.detect(photo4k)),
            "ms_4k_file": median_ms(lambda: det.detect_file(path4k)),
            "ms_4k_decode_full": median_ms(lambda: read_image(path4k), 3)}


def timing_rounds(dets: list, rounds: int, *photos) -> list[dict]:
    """`timing` for every (label, make_detector options), `rounds` times in turn (a shared machine's speed drifts
    between minutes, so turns keep the detectors comparable); per detector and figure the median over the rounds,
    and the spread."""
    runs = [[timing(n, m, *photos) for n, m in dets] for _ in range(rounds)]
    out = []
    for i, (n, _) in enumerate(dets):
        row: dict = {"detector": n}
        row.update({k: v for k, v in runs[0][i].items() if not k.startswith("ms_") and k != "detector"})
        for key in runs[0][i]:
            if key.startswith("ms_"):
                per = [r[i][key] for r in runs]
                row[key] = tuple(statistics.median(v[j] for v in per) for j in range(2))
                row[key + "_range"] = (min(v[0] for v in per), max(v[0] for v in per))
        out.append(row)
    return out


def w300_found(det, items) -> dict:
    """Faces found: a detection whose landmark box overlaps the truth landmarks' box at IoU >= 0.5 (the frame the
    landmark stage starts from, so both detectors are held to one convention, not to either's box style)."""
    found = 0
    for img_path, pts in items:
        truth = points_box(pts)
        dets = det.detect(read_image(img_path))
        if dets:
            frames = np.stack([d.box if d.landmark_box is None else d.landmark_box for d in dets])
            found += box_iou(frames, truth[None]).max() >= 0.5
    return {"found": found / len(items), "faces": len(items)}


def split_figures(name: str, choose, report_photos) -> dict:
    """The threshold sweep on the choice split and the report split's figures at the detector's own threshold."""
    det = make_detector(name, tiles="off", rotations="none")
    low = make_detector(name, tiles="off", rotations="none", threshold=0.3, min_face_size=0)
    rows = sweep(low, choose, [0.5, 0.55, 0.6, 0.65, 0.7, 0.72, 0.74, 0.76, 0.78, 0.8, 0.85])
    tally = DetectionTally(min_size=20)
    for p in report_photos:
        tally.add(np.array([d.box for d in det.detect(p.decode())]).reshape(-1, 4), p.boxes, p.ignore)
    n32 = tally.count(32)
    k32 = int(round(tally.recall(32) * n32))
    return {"threshold": det.threshold, "sweep": rows, "photos": len(report_photos), "faces_32": n32,
            "recall_32": tally.recall(32), "recall_32_ci": wilson(k32, n32), "precision": tally.precision(),
            "precision_ci": wilson(tally.tp, tally.tp + tally.fp), "tp": tally.tp, "fp": tally.fp}


def turned(image: np.ndarray, pts: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """The image and its points turned: `rot90`/`rot180`/`rot270` (a photo turned clockwise without an EXIF tag) or
    `roll+30` (the face rolled 30° clockwise about the image centre, borders replicated)."""
    h, w = image.shape[:2]
    if how.startswith("rot"):
        k = -int(how[3:]) // 90 % 4  # clockwise turns as counter-clockwise np.rot90 steps
        out = np.ascontiguousarray(np.rot90(image, k))
        p = pts.copy()
        for j in range(k):
            wj = w if j % 2 == 0 else h
            p = np.stack([p[:, 1], wj - 1 - p[:, 0]], axis=1)
        return out, p
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -float(how[4:]), 1.0)
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, pts @ m[:, :2].T + m[:, 2]


ORIENTATIONS = ("upright", "rot90", "rot180", "rot270", "roll+15", "roll-15", "roll+30", "roll-30", "roll+45", "roll-45")


def nme(points: np.ndarray, truth: np.ndarray) -> float:
    """Inter-ocular NME (outer eye corners), in %."""
    return 100 * float(np.linalg.norm(points - truth, axis=1).mean() / np.linalg.norm(truth[45] - truth[36]))


def best_face(faces, truth: np.ndarray):
    """The face whose points lie nearest the truth, or None."""
    return min(faces, key=lambda f: nme(f.landmarks, truth), default=None)


def orientation_figures(lm, items) -> dict:
    """Per orientation: the fraction of faces found (a face with NME < 20 %) and the mean NME of those found."""
    out = {}
    for how in ORIENTATIONS:
        errs = []
        for path, pts in items:
            image, truth = (read_image(path), pts) if how == "upright" else turned(read_image(path), pts, how)
            f = best_face(lm.predict(image), truth)
            errs.append(nme(f.landmarks, truth) if f is not None else float("inf"))
        e = np.array(errs)
        ok = e < 20
        out[how] = {"faces": len(e), "found": float(ok.mean()), "nme": float(e[ok].mean()) if ok.any() else float("nan")}
    return out


def yaw_figures(det, folder: Path) -> dict:
    """Fraction of AFLW2000-3D faces found per yaw range (as in w300_found)."""
    out = {}
    for sub in ("yaw00_30", "yaw30_60", "yaw60_90"):
        items = [(p.with_suffix(".jpg"), read_pts(p)) for p in sorted((folder / sub).glob("*.pts"))]
        out[sub] = w300_found(det, items)
    return out


def sample_loose(lm, scales=(0.6, 0.8, 1.5, 2.0, 2.5, 3.0)) -> dict:
    """On the shipped sample: mean and largest distance (px) of the points from boxes `scale` × the tight box of the
    default detector's points (centred on it) to those points."""
    from fflm.geometry import points_box
    from fflm.weights import asset

    image = read_image(asset("astronaut.png"))
    [ref] = lm.predict(image)
    tb = points_box(ref.landmarks)
    c, side = (tb[:2] + tb[2:]) / 2, (tb[2:] - tb[:2]).max()
    out = {}
    for k in scales:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            [f] = lm.predict(image, [np.r_[c - k * side / 2, c + k * side / 2]])
        d = np.linalg.norm(f.landmarks - ref.landmarks, axis=1)
        out[str(k)] = (float(d.mean()), float(d.max()))
    return out


def loose_figures(lm, items, scales=(0.6, 1.0, 2.0, 3.0)) -> dict:
    """Mean NME with square boxes `scale` × the landmarks' tight box (centred on it), given as the face box."""
    from fflm.geometry import points_box

    out = {"sample_px": sample_loose(lm)}
    for k in scales:
        errs = []
        for path, pts in items:
            tb = points_box(pts)
            c, side = (tb[:2] + tb[2:]) / 2, (tb[2:] - tb[:2]).max()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                [f] = lm.predict(read_image(path), [np.r_[c - k * side / 2, c + k * side / 2]])
            errs.append(nme(f.landmarks, pts))
        out[str(k)] = float(np.mean(errs))
    return out


def quality_figures(lm, items, photos, det_low) -> dict:
    """Face.quality of 300-W val faces (default detector) against background crops of the report split's photos
    given as face boxes, and against the false detections of YuNet at threshold 0.3 on those photos."""
    from fflm.train.detector_data import background_boxes
    from fflm.detect.metrics import match, roc_auc

    faces = [f.quality for path, pts in items for f in [best_face(lm.predict(read_image(path)), pts)] if f is not None]
    rng = np.random.default_rng(0)
    crops, false = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in photos:
            boxes = background_boxes(p, rng, 2)
            if len(boxes):
                crops += [f.quality for f in lm.predict(p.decode(), boxes)]
            dets = det_low.detect(p.decode())
            owner, _ = match(np.array([d.box for d in dets]).reshape(-1, 4),
                             np.concatenate([p.boxes, p.ignore]).reshape(-1, 4), 0.3)
            wrong = [d for d, o in zip(dets, owner) if o < 0]
            if wrong:
                false += [f.quality for f in lm.landmarks([p.decode()], [wrong])[0]]
    faces, crops, false = np.array(faces), np.array(crops), np.array(false)
    return {"faces": len(faces), "crops": len(crops), "false": len(false), "auc_crops": roc_auc(faces, crops),
            "auc_false": roc_auc(faces, false), "faces_below_0.5": float((faces < 0.5).mean()),
            "crops_below_0.5": float((crops < 0.5).mean()),
            "false_below_0.5": float((false < 0.5).mean()) if len(false) else float("nan")}


def video_counts(lm, path: Path, frames=(28, 29, 30, 31, 32)) -> list[int]:
    """Faces per frame (each frame on its own, no tracking) of the sample video."""
    from fflm.imageio import video_frames

    counts = []
    for k, frame in video_frames(path):
        if k in frames:
            counts.append(len(lm.predict(frame)))
        if k >= max(frames):
            break
    return counts


SECTIONS = ("splits", "tiling", "timing", "w300", "orientations", "yaw", "loose", "quality", "video")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(HERE.parents[1] / "shared"))
    ap.add_argument("--weights", default=None, help="landmark weights for the NME figures (default: shipped)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--step", type=int, default=12, help="every N-th 300-W val face for the landmark sections")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds, the detectors taking turns")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    shared = Path(a.shared)
    sections = set(a.sections.split(","))
    names = ["yunet", "builtin"]  # every shipped detector; the default first
    choose, report_photos = scene_splits(shared / "data" / "scenes")
    val300 = shared / "data" / "300w" / "val"
    items = [(p.with_suffix(".jpg"), read_pts(p)) for p in sorted(val300.glob("*.pts"))]
    report: dict = {"threads": a.threads, "rounds": a.rounds, "torch": torch.__version__, "opencv": cv2.__version__,
                    "step": a.step}

    def keep() -> None:  # after each section: a long run that stops keeps what it measured
        if a.json:
            Path(a.json).write_text(json.dumps(report, indent=2, default=float))
    if "splits" in sections:
        report["splits"] = {n: split_figures(n, choose, report_photos) for n in names}
        keep()
    if "tiling" in sections:
        report["tiling"] = [r for n in names for r in tiling_figures(n, None, report_photos)]
        keep()
    if "timing" in sections:
        with tempfile.TemporaryDirectory() as tmp:
            big = cv2.resize(read_image(items[0][0]), (2160, 2160), interpolation=cv2.INTER_CUBIC)
            photo4k = np.zeros((2160, 3840, 3), np.uint8)
            photo4k[:, 840:3000] = big
            path4k = Path(tmp) / "photo_4k.jpg"
            cv2.imwrite(str(path4k), photo4k[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
            photo640 = cv2.resize(report_photos[0].decode(), (640, 480), interpolation=cv2.INTER_LINEAR)
            # YuNet's own two runners too: ONNX Runtime (the default where installed) and OpenCV's
            dets = [(n, {"name": n}) for n in names]
            if YuNetDetector().runtime == "onnxruntime":
                dets.insert(1, ("yunet-opencv", {"name": "yunet", "runtime": "opencv"}))
            report["timing"] = timing_rounds(dets, a.rounds, photo640, photo4k, path4k)
            keep()
    if "w300" in sections:
        report["w300_found"] = {n: w300_found(make_detector(n, tiles="off"), items) for n in names}
        keep()
    from fflm.pipeline import Landmarker

    subset = items[:: a.step]
    if "orientations" in sections:
        report["orientations"] = orientation_figures(Landmarker(a.weights, device="cpu"), subset)
        keep()
    if "yaw" in sections:
        folder = shared / "data" / "more68" / "aflw2000"
        report["yaw"] = {f"{n}, rotations {r}": yaw_figures(make_detector(n, tiles="off", rotations=r), folder)
                         for n in names for r in ("none", "auto")}
        keep()
    if "loose" in sections:
        report["loose"] = loose_figures(Landmarker(a.weights, device="cpu"), subset)
        keep()
    if "quality" in sections:
        lm = Landmarker(a.weights, device="cpu")
        report["quality"] = quality_figures(lm, subset, report_photos,
                                            make_detector("yunet", tiles="off", rotations="none", threshold=0.3))
        keep()
    if "video" in sections:
        sample = shared / "data" / "samples" / "frames.mp4"
        report["video"] = {n: video_counts(Landmarker(a.weights, device="cpu", detector=n), sample) for n in names}
        keep()
    print_report(report)
    return 0


def print_report(r: dict) -> None:
    p = print
    p(f"fflm detector benchmark (torch {r['torch']}, OpenCV {r['opencv']}, {r['threads']} thread(s))")
    if "splits" in r:
        first = next(iter(r["splits"].values()))
        p(f"\n1. scene photos no shipped detector was trained on: threshold chosen on one part, figures from the other "
          f"({first['photos']} photos, {first['faces_32']} faces >= 32 px), IoU 0.5, 95 % Wilson intervals")
        p(f"{'detector':10} {'threshold':>9} {'recall>=32':>10} {'(CI)':>13} {'precision':>9} {'(CI)':>13} {'TP':>4} {'FP':>4}")
        for n, s in r["splits"].items():
            p(f"{n:10} {s['threshold']:9.2f} {s['recall_32']:10.3f} {'%.3f-%.3f' % tuple(s['recall_32_ci']):>13} "
              f"{s['precision']:9.3f} {'%.3f-%.3f' % tuple(s['precision_ci']):>13} {s['tp']:4d} {s['fp']:4d}")
        p("   choice part (threshold: recall>=32 / precision), by smallest face:")
        for n, s in r["splits"].items():
            for m in sorted({row["min_face"] for row in s["sweep"]}):
                p(f"   {n:8} {m:3.0f} px " + "  ".join(f"{row['threshold']:.2f}: {row['recall_32']:.3f}/{row['precision']:.3f}"
                                                 for row in s["sweep"] if row["min_face"] == m))
    if "tiling" in r:
        p("\n2. small faces in an 8K mosaic of the report photos (7680x4320), IoU 0.5")
        p(f"{'detector':10} {'tiles':>5} {'faces>=40':>9} {'R>=40':>7} {'R>=60':>7} {'precision':>9} {'seconds':>8}")
        for t in r["tiling"]:
            p(f"{t['detector']:10} {t['tiles']:>5} {t['faces_40']:9d} {t['recall_40']:7.3f} {t['recall_60']:7.3f} "
              f"{t['precision']:9.3f} {t['seconds']:8.2f}")
    if "timing" in r:
        p(f"\n3. detector time per photo, median ms over {r['rounds']} round(s), wall / process CPU (tiles off, "
          "rotations none); wall range over the rounds below")
        p(f"{'detector':10} {'640x480':>13} {'4K array':>13} {'4K file':>13} {'(4K full decode)':>17} {'640, auto':>13}")

        def wc(v) -> str:
            return f"{v[0]:6.1f}/{v[1]:6.1f}"

        for t in r["timing"]:
            p(f"{t['detector']:10} {wc(t['ms_640']):>13} {wc(t['ms_4k_array']):>13} {wc(t['ms_4k_file']):>13} "
              f"{wc(t['ms_4k_decode_full']):>17} {wc(t['ms_640_auto']):>13}  (640: {t['faces_640']} faces, best "
              f"{t['best_640']:.2f})")
            p(f"{'':10} " + " ".join(f"{'%.1f-%.1f' % t[k + '_range']:>13}" for k in ("ms_640", "ms_4k_array", "ms_4k_file"))
              + f" {'%.1f-%.1f' % t['ms_4k_decode_full_range']:>17}")
    if "w300_found" in r:
        p("\n4. 300-W val (554 crops, one face each): found (IoU >= 0.5)")
        for n, f in r["w300_found"].items():
            p(f"{n:10} {f['found']:6.3f}")
    if "orientations" in r:
        o = r["orientations"]
        p(f"\n5. default Landmarker on every {r['step']}-th 300-W val face ({o['upright']['faces']}), photo turned or "
          "face rolled: found (NME < 20 %), NME % of those found")
        p("   " + "  ".join(f"{k}: {v['found']:.3f} / {v['nme']:.2f}" for k, v in o.items()))
    if "yaw" in r:
        p("\n6. AFLW2000-3D faces found by yaw (landmark box IoU >= 0.5)")
        for n, y in r["yaw"].items():
            p(f"{n:24} " + "  ".join(f"{k}: {v['found']:.3f} of {v['faces']}" for k, v in y.items()))
    if "loose" in r:
        p(f"\n7. loose boxes (× the landmarks' tight box, centred) on every {r['step']}-th 300-W val face: NME %")
        p("   " + "  ".join(f"{k}x: {v:.3f}" for k, v in r["loose"].items() if k != "sample_px"))
        p("   the sample, px from the detector's points (mean / largest): "
          + "  ".join(f"{k}x: {m:.2f}/{x:.2f}" for k, (m, x) in r["loose"]["sample_px"].items()))
    if "quality" in r:
        q = r["quality"]
        p(f"\n8. Face.quality: {q['faces']} 300-W val faces against {q['crops']} background crops of the report photos "
          f"and {q['false']} false YuNet detections (threshold 0.3)")
        p(f"   ROC AUC faces/crops {q['auc_crops']:.5f}, faces/false detections {q['auc_false']:.5f}; below 0.5: faces "
          f"{q['faces_below_0.5']:.3f}, crops {q['crops_below_0.5']:.3f}, false detections {q['false_below_0.5']:.3f}")
    if "video" in r:
        p("\n9. faces per frame, shared/data/samples/frames.mp4 frames 28-32 (each frame on its own)")
        for n, c in r["video"].items():
            p(f"{n:10} {c}")


if __name__ == "__main__":
    sys.exit(main())
