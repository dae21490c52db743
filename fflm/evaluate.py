"""Landmark error metrics and evaluation reports.

Formulas (per face, N points, prediction p, truth t):
- NME (inter-ocular) = mean_i ‖p_i - t_i‖ / ‖t_a - t_b‖, with a, b the scheme's normalisation points
  (outer eye corners 36 and 45 for 300-W).
- NME (box diagonal) = mean_i ‖p_i - t_i‖ / ‖(max t) - (min t)‖, the diagonal of the truth's tight box.
- NME (box size) = mean_i ‖p_i - t_i‖ / √(w·h) of the truth's tight box (the usual AFLW2000 measure).
- Points a `.vis` file marks self-occluded (weight 0) are left out of the mean; the box is all points'.
- FR@x: the fraction of faces with NME > x. AUC@x: the area under the cumulative error distribution
  from 0 to x, divided by x, i.e. mean_faces (x - min(NME, x)) / x. Faces not found count as NME = ∞.
- Per-group NME uses the same normaliser over the group's points only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fflm.geometry import best_overlap, points_box

SIZE_BUCKETS = ((0, 256), (256, 512), (512, 1024), (1024, float("inf")))


BOX_SIZE = "box_size"  # `nme`'s normaliser √(w·h) of the truth's tight box


def nme(pred: np.ndarray, truth: np.ndarray, norm_points: tuple[int, int] | str | None,
        norm_truth: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-face NME [B] of pred vs truth [B, N, 2]. `norm_points` index into `norm_truth` (default `truth`);
    None normalises by the diagonal of the truth's tight box, BOX_SIZE by √(w·h) of that box. `weights` [B, N]:
    each point's share of the mean (0: left out, e.g. self-occluded)."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    ref = truth if norm_truth is None else np.asarray(norm_truth, np.float64)
    if norm_points is None or norm_points == BOX_SIZE:
        extent = ref.max(axis=-2) - ref.min(axis=-2)
        d = np.linalg.norm(extent, axis=-1) if norm_points is None else np.sqrt(extent[..., 0] * extent[..., 1])
    else:
        d = np.linalg.norm(ref[:, norm_points[0]] - ref[:, norm_points[1]], axis=-1)
    dist = np.linalg.norm(pred - truth, axis=-1)
    if weights is None:
        mean = dist.mean(axis=-1)
    else:
        w = np.asarray(weights, np.float64)
        mean = (dist * w).sum(axis=-1) / np.maximum(w.sum(axis=-1), 1e-12)
    return mean / np.maximum(d, 1e-12)


def contour_errors(pred: np.ndarray, truth: np.ndarray, contour: list[int], norm_points: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Errors of the points of an open contour (e.g. the jaw) split into their components along it and across it,
    over the normalising distance: two arrays [B, K]. Where a point sits along a contour is the ambiguous part of
    its annotation; across it, the visible edge pins it. The direction along the contour at a point is the
    truth's chord from the point before to the point after (one-sided at the ends); across is that turned 90°."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    idx = list(contour)
    before = [idx[max(k - 1, 0)] for k in range(len(idx))]
    after = [idx[min(k + 1, len(idx) - 1)] for k in range(len(idx))]
    chord = truth[:, after] - truth[:, before]
    along = chord / np.maximum(np.linalg.norm(chord, axis=-1, keepdims=True), 1e-12)
    e = pred[:, idx] - truth[:, idx]
    d = np.linalg.norm(truth[:, norm_points[0]] - truth[:, norm_points[1]], axis=-1)[:, None]
    a = (e * along).sum(-1)
    c = along[..., 0] * e[..., 1] - along[..., 1] * e[..., 0]
    return a / d, c / d


def failure_rate(errors: np.ndarray, threshold: float) -> float:
    return float(np.mean(np.asarray(errors) > threshold)) if len(errors) else float("nan")


def auc(errors: np.ndarray, threshold: float) -> float:
    """Area under the cumulative error distribution on [0, threshold], normalised to [0, 1]."""
    e = np.minimum(np.asarray(errors, np.float64), threshold)
    return float(np.mean((threshold - e) / threshold)) if len(e) else float("nan")


def ced(errors: np.ndarray, threshold: float, steps: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """The cumulative error distribution: (error levels, fraction of faces at or below each)."""
    x = np.linspace(0, threshold, steps + 1)
    e = np.sort(np.asarray(errors, np.float64))
    return x, np.searchsorted(e, x, side="right") / max(len(e), 1)


def summary(errors: np.ndarray) -> dict[str, float]:
    """Mean and median (finite faces), FR and AUC at 0.08 and 0.10, all as percentages."""
    e = np.asarray(errors, np.float64)
    fin = e[np.isfinite(e)]
    return {
        "mean": 100 * float(fin.mean()) if fin.size else float("nan"),
        "median": 100 * float(np.median(fin)) if fin.size else float("nan"),
        "fr_0.08": 100 * failure_rate(e, 0.08),
        "fr_0.10": 100 * failure_rate(e, 0.10),
        "auc_0.08": 100 * auc(e, 0.08),
        "auc_0.10": 100 * auc(e, 0.10),
    }


@dataclass
class EvalReport:
    """Per-face errors and their aggregates (percent)."""

    images: list[str]
    face_size: np.ndarray  # max side of the truth's tight box, px
    nme_io: np.ndarray  # inter-ocular NME per face (inf when no face was found)
    nme_diag: np.ndarray
    nme_box: np.ndarray | None = None  # box-size NME per face (√(w·h) of the truth's box)
    sources: list[str] | None = None  # each face's data source (e.g. a yaw range's folder), for `by_source`
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    refined: np.ndarray | None = None  # NME on the refined points, final prediction
    refined_global: np.ndarray | None = None  # NME on the same points, global stage's estimate
    residual: np.ndarray | None = None  # mean (truth - prediction) over found faces and all points, px (x, y)
    seconds: float = 0.0
    points: np.ndarray | None = None  # the predictions [faces, N, 2] (NaN where no face was found)

    def to_dict(self, per_image: bool = True) -> dict:
        found = np.isfinite(self.nme_io)
        d: dict = {
            "faces": len(self.images),
            "found": int(found.sum()),
            "inter_ocular": summary(self.nme_io),
            "box_diagonal": summary(self.nme_diag),
            "box_size": summary(self.nme_box) if self.nme_box is not None else None,
            "groups": {k: 100 * float(np.mean(v[found])) for k, v in self.groups.items()},
            "seconds": round(self.seconds, 2),
        }
        if self.residual is not None:
            d["mean_residual_px"] = [round(float(v), 4) for v in self.residual]  # px, not percent
        if self.refined is not None:
            d["refined_points"] = {"final": 100 * float(np.mean(self.refined[found])),
                                   "global_stage": 100 * float(np.mean(self.refined_global[found]))}
        d["by_face_size"] = {}
        for lo, hi in SIZE_BUCKETS:
            sel = (self.face_size >= lo) & (self.face_size < hi)
            if sel.any():
                name = f"{int(lo)}-{int(hi)}" if np.isfinite(hi) else f">{int(lo)}"
                d["by_face_size"][name] = {"faces": int(sel.sum()), "mean": 100 * float(np.mean(self.nme_io[sel & found]))
                                           if (sel & found).any() else float("nan")}
        if self.sources is not None and len(set(self.sources)) > 1:
            src = np.array(self.sources)
            d["by_source"] = {name: {"faces": int((src == name).sum()), "found": int((found & (src == name)).sum()),
                                     "inter_ocular": summary(self.nme_io[src == name])["mean"],
                                     "box_size": summary(self.nme_box[src == name])["mean"],
                                     "found_fraction": float(np.mean(found[src == name]))}
                              for name in dict.fromkeys(self.sources)}
        if per_image:
            d["per_image"] = [{"image": im, "face_size": round(float(s), 1), "nme_io": _num(a), "nme_diag": _num(b)}
                              for im, s, a, b in zip(self.images, self.face_size, self.nme_io, self.nme_diag)]
        return d


def _num(v: float) -> float | None:
    return round(100 * float(v), 4) if np.isfinite(v) else None


def evaluate(landmarker, samples: list, boxes: str | dict = "landmarks", batch_size: int = 16, progress=None,
             sources: list[str] | None = None) -> EvalReport:
    """Run `landmarker` on annotated samples (fflm.annotations.Sample) and measure it.

    boxes: "landmarks" (the truth's tight box), "detector" (the landmarker's detector; the detection
    overlapping the truth most is used, none means not found), or a dict {basename: [[x0, y0, x1, y1]]}.
    Samples' point weights (from `.vis` files) leave self-occluded points out; `sources`: each sample's source
    name, reported per source.
    """
    import time

    from fflm.detect.base import Detection
    from fflm.imageio import read_image

    scheme = landmarker.scheme
    n = len(samples)
    preds = np.full((n, scheme.num_points, 2), np.nan)
    glob = np.full_like(preds, np.nan)
    truth = np.stack([s.points for s in samples])
    vis = np.stack([np.ones(scheme.num_points) if s.weights is None else (s.weights > 0).astype(float)
                    for s in samples])
    t0 = time.perf_counter()
    for start in range(0, n, batch_size):
        chunk = samples[start : start + batch_size]
        arrays = [read_image(s.image) for s in chunk]
        dets, found = [], []
        for s, a in zip(chunk, arrays):
            tbox = points_box(s.points)
            if boxes == "landmarks":
                dets.append([Detection(tbox, 1.0)])
                continue
            cand = landmarker.detections(a, None if boxes == "detector" else boxes.get(Path(s.image).name, []))
            best = best_overlap(np.array([d.box for d in cand]).reshape(-1, 4), tbox, min_iou=0.1)
            dets.append([] if best is None else [cand[best]])
            found.append(cand)
        for k, faces in enumerate(landmarker.staged_landmarks(arrays, dets)):
            if boxes == "detector" and faces:  # as predict does: a wrong orientation's points looked at again
                again = landmarker.second_look(arrays[k], found[k], faces)
                if again is not None:
                    pick = best_overlap(np.stack([f.box for f, _ in again[1]]), points_box(chunk[k].points), 0.1)
                    faces = [] if pick is None else [again[1][pick]]
            if faces:
                preds[start + k] = faces[0][0].landmarks
                glob[start + k] = faces[0][1]
        if progress is not None:
            progress(min(start + batch_size, n), n)
    seconds = time.perf_counter() - t0
    missing = np.isnan(preds).any(axis=(1, 2))
    pred_safe = np.where(missing[:, None, None], 0.0, preds)

    def err(idx: list[int] | None, which: np.ndarray = pred_safe) -> np.ndarray:
        sel = slice(None) if idx is None else idx
        e = nme(which[:, sel], truth[:, sel], scheme.norm_points, truth, vis[:, sel])
        return np.where(missing, np.inf, e)

    ref = scheme.refined_indices
    return EvalReport(
        images=[str(s.image) for s in samples],
        face_size=np.array([float(np.max(points_box(s.points)[2:] - points_box(s.points)[:2])) for s in samples]),
        nme_io=err(None),
        nme_diag=np.where(missing, np.inf, nme(pred_safe, truth, None, weights=vis)),
        nme_box=np.where(missing, np.inf, nme(pred_safe, truth, BOX_SIZE, weights=vis)),
        sources=sources,
        groups={k: err(list(v)) for k, v in scheme.groups.items()},
        refined=err(ref) if ref else None,
        refined_global=err(ref, np.where(missing[:, None, None], 0.0, glob)) if ref else None,
        residual=(truth[~missing] - preds[~missing]).mean(axis=(0, 1)) if (~missing).any() else None,
        seconds=seconds,
        points=preds,
    )


def plot_ced(path: str | Path, curves: dict[str, np.ndarray], threshold: float = 0.10) -> None:
    """Cumulative error distribution curves (inter-ocular NME) as a PNG."""
    from fflm.plot import line_plot

    series, x = {}, None
    for name, errors in curves.items():
        x, y = ced(errors, threshold)
        series[f"{name} (AUC@{threshold:.2f} {100 * auc(errors, threshold):.1f})"] = list(100 * y)
    line_plot(path, list(100 * x), series, "NME (%)", "faces (%)", "cumulative error distribution")
