"""Video: landmark stability on clips of known motion, and tracking against per-frame detection on the samples.

    python benchmarks/video.py [--shared ../shared] [--part motion|samples|sweep|all] [--rounds 2] [--no-flip]
                               [--threads 1] [--json out.json] [--record DIR]

Each part runs every mode with the landmark stage's mirrored passes (the default) and without them (`--no-flip`
settings), in one run; `--no-flip` runs only the latter. `--record DIR` writes the report as
`DIR/<date>-<machine>-video.json` (fflm.cli.bench.record).

1. motion: the sample portrait (shared/data/samples/astronaut.png) scaled so its face is ~250 px wide, on a
   1920x1080 canvas, 60 frames at 25 fps written as MJPG (a temporary folder) and read back:
   - "wobble": sub-pixel shifts (±3 px over the clip), ±2 % scale and ±2° roll, each a slow sine;
   - "pan": a constant-velocity pan (6 px a frame to the right).
   The true motion of every point is the known affine map of its frame. Reported per mode (per-frame detection,
   tracking, tracking + One-Euro smoothing): the RMS over frames and points of each point's frame-to-frame motion
   against the true one, P_t - A_t A_(t-1)^-1 P_(t-1), in pixels and % of the inter-ocular distance (outer eye
   corners); and on the pan, the lag in frames: how far behind the points are, on frames 15-59, against
   per-frame detection with the same settings (whose points have no lag), divided by the velocity.
2. samples: frames.mp4 (7 fps, 35 frames), frames_25fps_mp4v.mp4 (25 fps, 125 frames) and a longer 1080p clip
   made from the latter (its frames forward then backward, scaled to 1920x1080: 250 frames). Truth: YuNet's boxes
   (frames.json's for frames.mp4; YuNet run here for the others when shared/models/yunet_2026may.onnx exists),
   linked into identities frame to frame by IoU and cut at scene cuts. Per mode: missed truth faces and false
   faces (IoU >= 0.3), identity switches (a truth face whose id differs from the one it had last; per-frame
   detection's id is the output's face index), and frames/s of the whole run (decoding included), one torch
   thread, per-frame detection as `fflm batch --no-track --workers 1` runs it, and the faces through the global
   network (a face once in each pass: re-centring, lost-face search, mirrored pass, a rolled face's second
   round); the modes take turns for
   `--rounds` rounds and the best frames/s of each is reported, with its ratio to per-frame detection's with the
   same settings.
3. sweep: frames/s, missed faces and detector runs against --detect-every on frames_25fps_mp4v.mp4.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from fflm import runner
from fflm.cli.bench import record
from fflm.geometry import box_iou
from fflm.imageio import read_image, video_frames
from fflm.pipeline import Landmarker
from fflm.smoothing import OneEuroParams
from fflm.outputs import ImageResult
from fflm.tracking import CUT_DIFFERENCE, DEFAULT_DETECT_EVERY, Tracker, _thumbnail, greedy_match

CANVAS = (1920, 1080)
FPS = 25.0
FACE_CENTRE = (223.0, 119.0)  # the astronaut's face centre in astronaut.png (its YuNet box's centre)
FACE_WIDTH = 89.9  # that box's width: the portrait is scaled by 250 / FACE_WIDTH


def affine(scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    """2x3 map from portrait pixels to canvas pixels: the face centre goes to the canvas centre + shift, scaled
    by `scale` and turned by `degrees` about it."""
    a = math.radians(degrees)
    r = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = np.array([CANVAS[0] / 2 - 0.5 + shift[0], CANVAS[1] / 2 - 0.5 + shift[1]])
    return np.concatenate([r, (centre - r @ np.array(FACE_CENTRE))[:, None]], axis=1)


def motions(kind: str, n: int = 60) -> list[np.ndarray]:
    base = 250.0 / FACE_WIDTH
    t = np.arange(n)
    if kind == "pan":
        return [affine(base, 0.0, (6.0 * k - 180.0, 0.0)) for k in t]
    return [affine(base * (1 + 0.02 * math.sin(2 * math.pi * k / 40)), 2.0 * math.sin(2 * math.pi * k / 50),
                   (3.0 * math.sin(2 * math.pi * k / 60), 2.0 * math.sin(2 * math.pi * k / 45 + 1.0))) for k in t]


def write_clip(path: Path, portrait: np.ndarray, maps: list[np.ndarray]) -> None:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, CANVAS)
    bgr = cv2.cvtColor(portrait, cv2.COLOR_RGB2BGR)
    for m in maps:
        vw.write(cv2.warpAffine(bgr, m, CANVAS, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
    vw.release()


def landmarks_per_mode(lm: Landmarker, path: Path, mode: str) -> list[np.ndarray]:
    """The first face's points in every frame (NaN where none was found)."""
    frames = [f for _, f in video_frames(path)]
    if mode == "per-frame":
        found = [lm.predict(f) for f in frames]
    else:
        tracker = Tracker(lm, smooth=OneEuroParams() if mode == "tracking+smooth" else None)
        found = [tracker.update(f, k / FPS) for k, f in enumerate(frames)]
    n = lm.scheme.num_points
    return [fs[0].landmarks if fs else np.full((n, 2), np.nan) for fs in found]


def motion_error(points: list[np.ndarray], maps: list[np.ndarray]) -> tuple[float, float]:
    """RMS (px, % IOD) of the points' frame-to-frame motion against the true motion."""
    err, iod = [], []
    for k in range(1, len(points)):
        a = np.vstack([maps[k], [0, 0, 1]]) @ np.linalg.inv(np.vstack([maps[k - 1], [0, 0, 1]]))
        expected = points[k - 1] @ a[:2, :2].T + a[:2, 2]
        err.append(np.sum((points[k] - expected) ** 2, axis=1))
        iod.append(np.linalg.norm(points[k][45] - points[k][36]))
    rms = float(np.sqrt(np.nanmean(np.concatenate(err))))
    return rms, 100 * rms / float(np.nanmean(iod))


def pan_offsets(points: list[np.ndarray], speed: float = 6.0) -> np.ndarray:
    """Each frame's mean point x minus the pan's travel: constant for points without lag."""
    return np.array([np.nanmean(p[:, 0]) - speed * k for k, p in enumerate(points)])


MODES = ("per-frame", "tracking", "tracking+smooth")


def settings(no_flip_only: bool) -> dict[str, Landmarker]:
    """The Landmarkers each mode runs with, by the label suffix of their rows: the default (mirrored passes) and
    `--no-flip`."""
    off = {", --no-flip": Landmarker(device="cpu", flip=False)}
    return off if no_flip_only else {"": Landmarker(device="cpu"), **off}


def part_motion(lms: dict[str, Landmarker], shared: Path, tmp: Path) -> dict:
    portrait = read_image(shared / "data" / "samples" / "astronaut.png")
    out: dict = {}
    for kind in ("wobble", "pan"):
        maps = motions(kind)
        path = tmp / f"{kind}.avi"
        write_clip(path, portrait, maps)
        rows = {}
        for suffix, lm in lms.items():
            ref = None
            for mode in MODES:
                label = mode + suffix
                pts = landmarks_per_mode(lm, path, mode)
                px, pct = motion_error(pts, maps)
                rows[label] = {"rms_px": round(px, 3), "rms_iod_pct": round(pct, 3)}
                if kind == "pan":
                    off = pan_offsets(pts)
                    ref = off[15:].mean() if ref is None else ref
                    rows[label]["lag_frames"] = round(float((ref - off[15:].mean()) / 6.0), 2)
                print(f"{kind:7s} {label:28s} {rows[label]}", flush=True)
        out[kind] = rows
    return out


# --- samples ---------------------------------------------------------------------------------------------------


def truth_for(shared: Path, path: Path, frames: list[np.ndarray]) -> list[np.ndarray] | None:
    """YuNet's boxes [x0, y0, x1, y1] per frame: frames.json's for frames.mp4, else YuNet run now (None without it)."""
    samples = shared / "data" / "samples"
    if path == samples / "frames.mp4":
        per = json.loads((samples / "frames.json").read_text())["faces_per_frame"]
        return [np.array([[x, y, x + w, y + h] for x, y, w, h, _ in f]).reshape(-1, 4) for f in per]
    model = shared / "models" / "yunet_2026may.onnx"
    if not model.exists():
        return None
    from fflm.detect import make_detector

    yunet = make_detector("yunet", model, tiles="off", threshold=0.6)
    return [np.array([d.box for d in yunet.detect(f)]).reshape(-1, 4) for f in frames]


def identities(frames: list[np.ndarray], truth: list[np.ndarray]) -> list[list[int]]:
    """An identity for every truth box: linked to the previous frame's by IoU > 0.3, new after a scene cut."""
    ids, nxt, prev, thumb = [], 0, ([], np.zeros((0, 4))), None
    for frame, boxes in zip(frames, truth):
        th = _thumbnail(frame)
        cut = thumb is not None and float(np.abs(th - thumb).mean()) > CUT_DIFFERENCE
        thumb = th
        mine = [-1] * len(boxes)
        if not cut:
            for i, j, _ in greedy_match(boxes, prev[1], 0.3):
                mine[i] = prev[0][j]
        for i in range(len(mine)):
            if mine[i] < 0:
                mine[i], nxt = nxt, nxt + 1
        ids.append(mine)
        prev = (mine, boxes)
    return ids


def score_run(results: list[list], truth: list[np.ndarray], ids: list[list[int]]) -> dict:
    """Missed and false faces and identity switches of one run against the truth."""
    missed = false = switches = 0
    last: dict[int, int] = {}
    for faces, boxes, who in zip(results, truth, ids):
        pred = np.array([f.box for f in faces]).reshape(-1, 4)
        pairs = greedy_match(boxes, pred, 0.3)
        missed += len(boxes) - len(pairs)
        false += len(pred) - len(pairs)
        for i, j, _ in pairs:
            tid = faces[j].track if faces[j].track is not None else j
            switches += who[i] in last and last[who[i]] != tid
            last[who[i]] = tid
    return {"truth_faces": int(sum(len(b) for b in truth)), "missed": missed, "false": false, "id_switches": int(switches)}


def timed_run(lm: Landmarker, path: Path, mode: str, detect_every: int | None = None) -> tuple[list[list], float, int, int]:
    """(faces per frame, frames/s, detector runs, faces through the global network) of the CLI's own path for a
    video; a face counts once in each pass it takes (re-centring, lost-face search, mirrored pass, second round)."""
    passes, real = [0], lm.model._run

    def counted(net, head, x):
        passes[0] += len(x) if net is lm.model.global_net else 0
        return real(net, head, x)

    lm.model._run = counted
    try:
        t0 = time.perf_counter()
        if mode == "per-frame":
            results = list(runner.run(lm, runner.video_items(path), None, 8, 1))
            runs = len(results)
        else:  # tracking.video_results's loop, keeping the tracker to count its detector runs
            tracker = Tracker(lm, detect_every or DEFAULT_DETECT_EVERY, OneEuroParams() if mode == "tracking+smooth" else None)
            results = [ImageResult(str(path), faces=tracker.update(f, n / FPS)) for n, f in video_frames(path)]
            runs = tracker.detections
        seconds = time.perf_counter() - t0
    finally:
        del lm.model._run
    return [r.faces for r in results], len(results) / seconds, runs, passes[0]


def longer_clip(src: Path, tmp: Path) -> Path:
    """The 25 fps sample forward then backward, scaled to 1920x1080 (MJPG, 250 frames)."""
    frames = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), CANVAS, interpolation=cv2.INTER_CUBIC)
              for _, f in video_frames(src)]
    path = tmp / "longer_1080p.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, CANVAS)
    for f in frames + frames[::-1]:
        vw.write(f)
    vw.release()
    return path


def part_samples(lms: dict[str, Landmarker], shared: Path, tmp: Path, rounds: int) -> dict:
    samples = shared / "data" / "samples"
    modes = {mode + suffix: (lm, mode, "per-frame" + suffix) for suffix, lm in lms.items() for mode in MODES}
    out = {}
    for path in (samples / "frames.mp4", samples / "frames_25fps_mp4v.mp4", longer_clip(samples / "frames_25fps_mp4v.mp4", tmp)):
        frames = [f for _, f in video_frames(path)]
        truth = truth_for(shared, path, frames)
        ids = identities(frames, truth) if truth is not None else None
        rows = {}
        for round_ in range(rounds):  # the modes take turns; the best frames/s of each (a shared machine)
            for label, (landmarker, how, _) in modes.items():
                faces, fps, runs, passes = timed_run(landmarker, path, how)
                best = max(fps, rows.get(label, {}).get("fps", 0.0))
                rows[label] = {"fps": round(best, 2), "detector_runs": runs, "global_passes": passes,
                               **(score_run(faces, truth, ids) if truth else {})}
                print(f"{path.name:24s} {label:28s} round {round_} {fps:.2f} frames/s {rows[label]}", flush=True)
        for label, (_, _, base) in modes.items():
            rows[label]["speedup"] = round(rows[label]["fps"] / rows[base]["fps"], 2)
        out[path.name] = rows
    return out


def part_sweep(lm: Landmarker, shared: Path) -> dict:
    path = shared / "data" / "samples" / "frames_25fps_mp4v.mp4"
    frames = [f for _, f in video_frames(path)]
    truth = truth_for(shared, path, frames)
    ids = identities(frames, truth) if truth is not None else None
    out = {}
    for n in (1, 4, 8, 16):
        faces, fps, runs, passes = timed_run(lm, path, "tracking", n)
        out[n] = {"fps": round(fps, 2), "detector_runs": runs, "global_passes": passes, **(score_run(faces, truth, ids) if truth else {})}
        print(f"--detect-every {n:2d} {out[n]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--part", choices=("motion", "samples", "sweep", "all"), default="all")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="samples: runs of each mode (best frames/s)")
    ap.add_argument("--no-flip", action="store_true", help="the landmark stage without its mirrored passes")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--record", type=Path, metavar="DIR", help="also write the report to DIR/<date>-<machine>-video.json")
    args = ap.parse_args(argv)
    if not (args.shared / "data" / "samples").is_dir():
        print(f"video.py: no samples in {args.shared / 'data'}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    lms = settings(args.no_flip)
    report: dict = {"threads": args.threads, "torch": torch.__version__, "load_average": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="fflm-video-") as tmp:
        if args.part in ("motion", "all"):
            report["motion"] = part_motion(lms, args.shared, Path(tmp))
        if args.part in ("samples", "all"):
            report["samples"] = part_samples(lms, args.shared, Path(tmp), args.rounds)
        if args.part in ("sweep", "all"):
            report["sweep"] = part_sweep(next(iter(lms.values())), args.shared)
    report["load_average_after"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.record:
        given = [*(["--part", args.part] if args.part != "all" else []), *(["--rounds", str(args.rounds)] if args.rounds != 2 else []),
                 *(["--no-flip"] if args.no_flip else []), "--threads", str(args.threads)]
        command = shlex.join(["python", "benchmarks/video.py", *given])
        args.record.mkdir(parents=True, exist_ok=True)
        print(f"recorded {record(report, args.record, command, kind='video')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
