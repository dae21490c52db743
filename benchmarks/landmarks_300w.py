"""fflm against dlib on the 300-W common test subset, each with its own face boxes, in one run.

    python benchmarks/landmarks_300w.py [--val ../shared/data/300w/val] [--weights W] [--boxes detector|jitter|landmarks]
                                        [--record DIR]

fflm: `fflm eval`'s measurement with boxes from its detector (`detector`), or from the truth with
detector-like jitter (`jitter`: box scaled by exp(N(0, 0.1)) and shifted by N(0, 0.05)·side, seed 0), or
the truth's tight box (`landmarks`). dlib (when `dlib-bin` and `face-recognition-models` are installed):
its HOG detector (upsampling once) and its 68-point shape predictor; the detection overlapping the truth
most is used, and a face it does not find counts as a failure (NME = inf, excluded from the mean, counted
in FR). NME is inter-ocular (outer eye corners), in percent. Then, for each method on the faces it found: NME per
region, and the jaw's errors split along and across the contour (RMS, percent of the inter-ocular distance)
and how alike the two methods' errors along it are; and both methods on the 76 faces dlib's model was not
trained on (listed in dlib_heldout_300w_val.txt) against the 478 it was. `--record DIR` writes the rows as
`DIR/<date>-<machine>-landmarks-300w.json` (fflm.cli.bench.record) for the README's table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from fflm.evaluate import contour_errors, evaluate, nme, summary
from fflm.geometry import best_overlap, points_box
from fflm.pipeline import Landmarker
from fflm.annotations import read_annotations

HERE = Path(__file__).resolve().parent


def jittered_boxes(samples: list, seed: int = 0) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    out = {}
    for s in samples:
        b = points_box(s.points)
        c, size = (b[:2] + b[2:]) / 2, b[2:] - b[:2]
        size = size * np.exp(rng.normal(0, 0.1))
        c = c + rng.normal(0, 0.05, 2) * size
        out[Path(s.image).name] = [list(np.concatenate([c - size / 2, c + size / 2]))]
    return out


def run_dlib(samples: list, models: tuple = (None,)) -> list[dict] | None:
    """dlib's shape predictors `models` (None: its published one) on its HOG detector's boxes, detected once per image."""
    from fflm.imageio import read_image
    from fflm.benchmarking.peers import DlibLandmarker, dlib_available

    if not dlib_available():
        return None
    tools = [DlibLandmarker(upsample=1, model=m) for m in models]
    runs = [{"errors": [], "points": np.full((len(samples), 68, 2), np.nan), "seconds": 0.0, "found": 0} for _ in tools]
    for k, s in enumerate(samples):
        img = read_image(s.image)
        boxes = tools[0].detect(img)
        best = best_overlap(boxes, points_box(s.points), min_iou=-1.0)  # any detection: the one overlapping most
        for tool, r in zip(tools, runs):
            if best is None:
                r["errors"].append(np.inf)
                continue
            t = time.perf_counter()
            r["points"][k] = tool.landmarks(img, boxes[best])
            r["seconds"] += time.perf_counter() - t
            r["errors"].append(float(nme(r["points"][k][None], s.points[None], (36, 45))[0]))
            r["found"] += 1
    return [{"errors": np.array(r["errors"]), "ms_per_face": 1000 * r["seconds"] / max(r["found"], 1), "found": r["found"],
             "points": r["points"]} for r in runs]


def dlib_version() -> str:
    """The installed dlib's version, or "" when it is not installed."""
    try:
        import dlib
    except ImportError:
        return ""
    return dlib.__version__


def dlib_heldout(samples: list) -> np.ndarray:
    """Which samples dlib's 68-point model never saw in training (by file stem; see dlib_heldout_300w_val.txt)."""
    lines = (HERE / "dlib_heldout_300w_val.txt").read_text().splitlines()
    stems = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    return np.array([Path(s.image).stem in stems for s in samples])


def parts_row(points: np.ndarray, truth: np.ndarray, scheme) -> list[str]:
    """Per-region NME and the jaw's along / across-contour RMS (percent), over the faces with a prediction."""
    ok = ~np.isnan(points).any(axis=(1, 2))
    p, t = points[ok], truth[ok]
    cells = [f"{100 * nme(p[:, list(idx)], t[:, list(idx)], scheme.norm_points, t).mean():.2f}" for idx in scheme.groups.values()]
    along, across = contour_errors(p, t, list(scheme.groups["jaw"]), scheme.norm_points)
    return [*cells, f"{100 * np.sqrt(np.mean(along**2)):.2f}", f"{100 * np.sqrt(np.mean(across**2)):.2f}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", default=str(HERE.parent.parent / "shared" / "data" / "300w" / "val"))
    ap.add_argument("--weights", default=None)
    ap.add_argument("--boxes", default="jitter", choices=("detector", "jitter", "landmarks"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dlib-model", default=None,
                    help="also a retrained dlib shape predictor (benchmarks/train_dlib_300w.py), with the same HOG boxes")
    ap.add_argument("--record", type=Path, metavar="DIR", help="also write the rows to DIR/<date>-<machine>-landmarks-300w.json")
    args = ap.parse_args()
    samples = read_annotations(args.val, 68)
    lm = Landmarker(args.weights, device=args.device)
    boxes = jittered_boxes(samples) if args.boxes == "jitter" else args.boxes
    rep = evaluate(lm, samples, boxes)
    detector = {"yunet": "YuNet", "builtin": "built-in"}.get(getattr(lm.detector, "name", ""), "its")
    fflm_name = f"fflm, {detector} detector" if args.boxes == "detector" else f"fflm ({args.boxes} boxes)"
    rows = [(fflm_name, rep.nme_io, 1000 * rep.seconds / len(samples), int(np.isfinite(rep.nme_io).sum()))]
    models = [(f"dlib {dlib_version()}, HOG detector + 68-point model", None)]
    if args.dlib_model:
        models.append((f"dlib retrained: {Path(args.dlib_model).name} (HOG boxes)", args.dlib_model))
    runs = run_dlib(samples, tuple(m for _, m in models))
    dlibs = [] if runs is None else [(name, r) for (name, _), r in zip(models, runs)]
    d = runs[0] if runs else None
    rows += [(name, r["errors"], r["ms_per_face"], r["found"]) for name, r in dlibs]
    from rich.table import Table

    from fflm.cli.app import out_console

    t = Table(title=f"300-W common subset ({len(samples)} faces), inter-ocular NME %", title_justify="left")
    for c in ("method", "found", "mean", "median", "FR@0.08", "AUC@0.08", "FR@0.10", "AUC@0.10", "ms/face"):
        t.add_column(c, justify="right" if c != "method" else "left")
    for name, e, ms, found in rows:
        s = summary(e)
        t.add_row(name, f"{found}/{len(samples)}", *(f"{s[k]:.2f}" for k in ("mean", "median", "fr_0.08", "auc_0.08",
                                                                              "fr_0.10", "auc_0.10")), f"{ms:.1f}")
    con = out_console()  # a terminal's width, else 160 columns (a log file gets whole tables)
    con.print(t)
    truth = np.stack([s.points for s in samples])
    parts = Table(title="per region (NME %) and the jaw along / across its contour (RMS, % of the inter-ocular distance)",
                  title_justify="left")
    for c in ("method", *lm.scheme.groups, "jaw along", "jaw across"):
        parts.add_column(c, justify="right" if c != "method" else "left")
    parts.add_row(rows[0][0], *parts_row(rep.points, truth, lm.scheme))
    for name, r in dlibs:
        parts.add_row(name, *parts_row(r["points"], truth, lm.scheme))
    con.print(parts)
    if d is not None:  # do both miss each jaw point the same way? (faces both found)
        both = ~(np.isnan(rep.points).any(axis=(1, 2)) | np.isnan(d["points"]).any(axis=(1, 2)))
        jaw = list(lm.scheme.groups["jaw"])
        a_f = contour_errors(rep.points[both], truth[both], jaw, lm.scheme.norm_points)[0]
        a_d = contour_errors(d["points"][both], truth[both], jaw, lm.scheme.norm_points)[0]
        con.print(f"jaw errors along the contour, fflm against dlib: correlation {np.corrcoef(a_f.ravel(), a_d.ravel())[0, 1]:.2f} "
                  f"over the {len(jaw) * int(both.sum())} jaw points of the {int(both.sum())} faces both found")
    heldout = dlib_heldout(samples)
    if heldout.any():
        split = Table(title="by dlib's training split: NME % on the faces each method found (mean / median)",
                      title_justify="left")
        for c in ("method", "faces dlib never saw", "faces dlib trained on"):
            split.add_column(c, justify="right" if c != "method" else "left")
        for name, e, _, _ in rows:
            cells = []
            for subset in (heldout, ~heldout):
                ok = subset & np.isfinite(e)
                figures = f": {100 * np.mean(e[ok]):.2f} / {100 * np.median(e[ok]):.2f}" if ok.any() else ""
                cells.append(f"{ok.sum()}/{subset.sum()}{figures}")
            split.add_row(name, *cells)
        con.print(split)
    g = rep.to_dict(per_image=False)
    if "refined_points" in g:
        con.print(f"fflm refined points: final {g['refined_points']['final']:.2f} %, "
                  f"global stage {g['refined_points']['global_stage']:.2f} %")
    if d is None:
        con.print("dlib not installed (pip install dlib-bin face-recognition-models) — its row is missing")
    if args.record:
        from fflm.cli.bench import record

        points = [rep.points] + [r["points"] for _, r in dlibs]
        table = [{"tool": name, "found": found, "faces": len(samples),
                  **{k: round(summary(e)[key], 2 if k != "auc_008" else 1)
                     for k, key in (("mean", "mean"), ("median", "median"), ("fr_008", "fr_0.08"), ("auc_008", "auc_0.08"))},
                  "regions": dict(zip(lm.scheme.groups, map(float, parts_row(p, truth, lm.scheme))))}
                 for (name, e, _, found), p in zip(rows, points)]
        command = "python benchmarks/landmarks_300w.py" + "".join(
            f" --{k.replace('_', '-')} {v}" for k, v in (("boxes", args.boxes), ("weights", args.weights),
                                                         ("dlib_model", args.dlib_model)) if v)
        args.record.mkdir(parents=True, exist_ok=True)
        con.print(f"recorded {record({'rows': table}, args.record, command, kind='landmarks-300w')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
