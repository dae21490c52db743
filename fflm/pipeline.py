"""The inference pipeline: decode → detect → global stage → crop → regional stage → Face objects.

Faces of all images in a call travel together through each network; the crops of every face for one
region go through that region's network in one call.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np
import torch

from fflm.choices import BACKENDS, DEVICES
from fflm import presets
from fflm.crop import crop_u8
from fflm.detect import Detection, FaceDetector, make_detector
from fflm.errors import BoxWarning, UsageError
from fflm.geometry import clip_box, face_size, local_to_box, points_box, square_box
from fflm.imageio import read_image, to_rgb8
from fflm.inference import compute_dtype, networks_in
from fflm.model.network import StageOutput
from fflm.quality import load_map, quality
from fflm.scheme import LandmarkScheme
from fflm.shape import regularise
from fflm.upright import TRUSTED_QUALITY, needs_turn, points_detection, restore, upright_patch, used_roll
from fflm.weights import load_model, resolve

if TYPE_CHECKING:
    from fflm.smoothing import OneEuroParams


@dataclass
class Face:
    """One face: `box` [x0, y0, x1, y1] and `landmarks` [N, 2] in original pixels (0-based pixel centres),
    the detector's `score`, per-landmark `landmark_scores` in [0, 1] (heatmap peak mass: see README) and `quality`
    in [0, 1], low when the points are not on a face (fflm.quality).
    `track`: in a video, the id the face keeps from frame to frame (None for photos and untracked frames)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    landmark_scores: np.ndarray
    track: int | None = None
    quality: float | None = None

    def to_dict(self) -> dict:
        d = {} if self.track is None else {"track": self.track}
        return {
            **d,
            "box": [round(float(v), 3) for v in self.box],
            "score": round(float(self.score), 4),
            "quality": None if self.quality is None else round(float(self.quality), 4),
            "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in self.landmarks],
            "landmark_scores": [round(float(s), 4) for s in self.landmark_scores],
        }


def pick_device(device: str) -> torch.device:
    """`auto` is CUDA when available, else CPU; `cuda` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"unknown device {device!r} ({', '.join(DEVICES)})")
    return torch.device(device)


class Landmarker:
    """Facial landmarks on images of any resolution.

    `Landmarker()` loads the shipped weights, `Landmarker("300w-68-stacks2")` another shipped file by name (see
    fflm.weights.SHIPPED), `Landmarker.from_file(path)` any other. `predict(image)`
    takes a path or an RGB uint8 array [H, W, 3] and optional face boxes; without boxes the detector
    finds them: `detector` is a FaceDetector or a name of fflm.detect.make_detector ("yunet", the
    default; "builtin"; "none" = the whole image is the face).
    `shape_prior`: use the weights' shape model, when they have one, on the points no region refines.
    `precision`: the landmark networks' arithmetic, `float32`, `bfloat16`, or `auto` (bfloat16 where the device
    computes it natively: same accuracy on 300-W, networks ~25-40 % faster on such a CPU; see docs/benchmarks.md).
    `backend`: `torch`, `onnxruntime` or `openvino` to run the networks from the ONNX files `fflm export --format
    onnx` wrote into `onnx_dir` from these weights, on the CPU (onnxruntime: float32, the `fflm[onnx]` extra;
    openvino: `precision` as for torch, the `fflm[openvino]` extra; see fflm.backends).
    `preset`: `default`, or `fast` (lighter weights, no mirrored passes; fflm.presets): it chooses the weights and
    `flip` unless they are given.
    """

    def __init__(self, weights: str | Path | None = None, device: str = "auto",
                 detector: FaceDetector | str = "yunet", recentre: bool = True,
                 recentre_tolerance: float = 0.02, recentre_passes: int = 4, upright: bool = True,
                 flip: bool | None = None, shape_prior: bool = True,
                 precision: str = "auto", backend: str = "torch", onnx_dir: str | Path | None = None,
                 preset: str = "default") -> None:
        chosen = presets.preset(preset)
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r} ({', '.join(BACKENDS)})")
        exported = backend != "torch"  # the networks run from the files of an ONNX folder (fflm.backends)
        if exported != (onnx_dir is not None):
            raise UsageError("the onnxruntime and openvino backends run the files of an ONNX folder: give a backend "
                             "and onnx_dir together")
        if exported and device.startswith("cuda"):
            raise UsageError(f"the {backend} backend runs on the CPU")
        if backend == "onnxruntime" and precision == "bfloat16":
            raise UsageError("the onnxruntime backend runs in float32")
        self.device = pick_device("cpu" if exported else device)
        #: the networks' arithmetic; the torch parts around them (heads, geometry) always run in float32
        dtype = compute_dtype("float32" if backend == "onnxruntime" else precision, self.device)
        self.precision = str(dtype).removeprefix("torch.")
        self.dtype = torch.float32 if exported else dtype  # what torch's own networks run in
        self.weights_path = resolve(chosen.weights if weights is None else weights)
        trained, self.metadata = load_model(self.weights_path, self.device)
        # folded, the four regional networks as one grouped network (one call per stage), in the chosen dtype
        self.model = trained.for_serving(self.dtype, CPU_ROWS if self.device.type == "cpu" else None)
        self.detector = make_detector(detector) if isinstance(detector, str) else detector
        self.recentre = recentre
        self.recentre_tolerance = recentre_tolerance
        self.recentre_passes = recentre_passes  # global passes at most: each re-frames the faces that still moved
        self.upright = upright  # frame rolled faces upright (fflm.upright)
        self.lost_face = LOST_FACE  # below this mean confidence, smaller frames are tried (0: never)
        self.flip = chosen.flip if flip is None else flip  # both stages also on the mirrored face and crops, averaged: more accurate, slower
        # the weights' shape model pulls the points no regional network refines toward a plausible face
        self.shape = self.model.shape_model() if shape_prior else None
        self.quality_map = load_map()
        self.max_faces_per_call = 32  # bounds memory on crowds; every network call still takes many faces
        self.backend = backend
        if backend == "onnxruntime":
            from fflm.backends.onnx import use_onnxruntime

            use_onnxruntime(self, onnx_dir)
        elif backend == "openvino":
            from fflm.backends.openvino import use_openvino

            use_openvino(self, onnx_dir, self.precision)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> "Landmarker":
        return cls(path, **kwargs)

    @property
    def scheme(self) -> LandmarkScheme:
        return self.model.scheme

    def predict(self, image: str | Path | np.ndarray, boxes: Sequence[Sequence[float]] | None = None) -> list[Face]:
        """Faces in one image, best detector score first."""
        return self.predict_batch([image], None if boxes is None else [boxes])[0]

    def predict_batch(self, images: Sequence[str | Path | np.ndarray],
                      boxes: Sequence[Sequence[Sequence[float]] | None] | None = None) -> list[list[Face]]:
        """Faces in several images, run through the networks together."""
        arrays = [read_image(im) if isinstance(im, (str, Path)) else to_rgb8(im) for im in images]
        dets = [self.detections(a, None if boxes is None else boxes[i]) for i, a in enumerate(arrays)]
        staged = self.staged_landmarks(arrays, dets)
        if boxes is None:
            for i, (image, found) in enumerate(zip(arrays, staged)):
                again = self.second_look(image, dets[i], found)
                if again is not None:
                    staged[i] = again[1]
        return [[face for face, _ in faces] for faces in staged]

    def second_look(self, image: np.ndarray, found: Sequence[Detection], faces: list[tuple[Face, np.ndarray]]
                    ) -> tuple[list[Detection], list[tuple[Face, np.ndarray]]] | None:
        """With --rotations auto: when the best of `faces` (as staged_landmarks gives them, from the detector's
        `found` on `image`) is at least DOUBT_SIZE px but every face's points are on no face (quality under
        TRUSTED_QUALITY), the detections of the best other orientation (the photo as it is, when a turned one was
        chosen) and their faces, if one of those is on a face; else None."""
        look = getattr(self.detector, "second_look", None)
        # small faces score low quality for their blur alone: only a large face is doubted
        if (look is None or not faces or face_size(faces[0][0].box) < DOUBT_SIZE
                or max(f.quality for f, _ in faces) >= TRUSTED_QUALITY):
            return None
        other = look(image, list(found))
        if other is None:
            return None
        again = self.staged_landmarks([image], [other])[0]
        return (other, again) if max(f.quality for f, _ in again) >= TRUSTED_QUALITY else None

    def track(self, frames: "str | Path | Iterable[np.ndarray]", detect_every: int | None = None,
              smooth: "OneEuroParams | None" = None, fps: float | None = None) -> Iterator[list[Face]]:
        """Each frame's faces, with a `track` id that a face keeps while it stays in the picture: `frames` is a
        video path or an iterable of RGB arrays (`fps`, default the file's or 30, times the smoothing).
        The detector runs every `detect_every` frames and whenever a face may have come or gone; in between,
        each face is framed from its previous landmarks. `smooth`: One-Euro filter parameters (fflm.smoothing)."""
        from fflm.tracking import track_frames

        yield from track_frames(self, frames, detect_every, smooth, fps)

    def detections(self, image: np.ndarray, boxes: Sequence[Sequence[float]] | None = None,
                   label: str = "") -> list[Detection]:
        """The given boxes (validated, clipped with a warning), or the detector's faces when None."""
        if boxes is None:
            return self.detector.detect(image)
        h, w = image.shape[:2]
        out = []
        for b in boxes:
            box = np.asarray(b, dtype=np.float64)
            if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
                raise UsageError(f"a face box must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0, got {list(b)}")
            clipped = clip_box(box, w, h)
            if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                raise UsageError(f"face box {list(b)} lies outside the {w}×{h} image")
            if not np.allclose(clipped, box):
                where = f"{label}: " if label else ""
                warnings.warn(f"{where}face box {[round(float(v), 1) for v in box]} clipped to the {w}×{h} image",
                              BoxWarning, stacklevel=3)
            out.append(Detection(clipped, 1.0))
        return out

    def landmarks(self, images: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]],
                  passes: int | None = None, search: bool = True) -> list[list[Face]]:
        """Landmarks for given detections. The face frame comes from each box (or the detector's landmark-box
        estimate). With `recentre`, the global stage's points propose a frame of their own; faces whose frame
        that moves by more than `recentre_tolerance` of its side get another global pass on it, until no frame
        moves or after `passes` passes (default `recentre_passes`; so a loose or shifted box converges onto the
        face). A face still unsure of its points is looked for in smaller frames (the lost-face search) unless
        `search` is False. The regional stage then runs once for all faces. A face the detector found rolled
        (fflm.upright) is framed upright in a turned patch of its image, its points turned back.
        `passes` and `search` hold for this call only: a caller that frames faces from their own landmarks (the
        tracker, fflm.tracking) needs fewer passes and no search."""
        return [[face for face, _ in faces] for faces in self.staged_landmarks(images, detections, passes, search)]

    @torch.inference_mode()
    def staged_landmarks(self, images: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]],
                         passes: int | None = None, search: bool = True) -> list[list[tuple[Face, np.ndarray]]]:
        """As `landmarks`, each face with the global stage's own points [N, 2] beside it (original pixels, with the
        mirror offset; before the regional networks and the shape model), to measure what the refinement adds."""
        owners = [(i, d) for i, ds in enumerate(detections) for d in ds]
        results: list[list[tuple[Face, np.ndarray]]] = [[] for _ in images]
        for start in range(0, len(owners), self.max_faces_per_call):
            chunk = owners[start : start + self.max_faces_per_call]
            faces = self._upright([images[i] for i, _ in chunk], [d for _, d in chunk], passes, search)
            # the points' own roll: a detector's keypoints understate a strong roll; such faces go round once more
            # (only points on a face, by their quality, are trusted with that)
            turned = [(k, points_detection(f.landmarks, self.scheme.norm_points, d)) for k, ((_, d), (f, _))
                      in enumerate(zip(chunk, faces)) if f.quality >= TRUSTED_QUALITY]
            turned = [(k, t) for k, t in turned if self.upright and needs_turn(t.roll, used_roll(chunk[k][1]))]
            if turned:
                again = self._upright([images[chunk[k][0]] for k, _ in turned], [t for _, t in turned], passes, search)
                for (k, _), face in zip(turned, again):
                    faces[k] = face
            for (i, _), face in zip(chunk, faces):
                results[i].append(face)
        for faces in results:
            faces.sort(key=lambda pair: -pair[0].score)
        return results

    def _upright(self, images: Sequence[np.ndarray], dets: Sequence[Detection], passes: int | None,
                 search: bool) -> list[tuple[Face, np.ndarray]]:
        """`_faces`, the rolled faces (fflm.upright) in upright patches of their images, points turned back."""
        patches = [upright_patch(im, d) if self.upright else None for im, d in zip(images, dets)]
        with networks_in(self.dtype, self.device):
            faces = self._faces([im if p is None else p[0] for im, p in zip(images, patches)],
                                [d if p is None else p[1] for d, p in zip(dets, patches)], passes, search)
        out = []
        for d, p, (face, glob) in zip(dets, patches, faces):
            if p is not None:
                face.landmarks, glob = restore(face.landmarks, p[2]), restore(glob, p[2])
                face.box, face.score = d.box, d.score
            out.append((face, glob))
        return out

    def _faces(self, images: Sequence[np.ndarray], dets: Sequence[Detection], passes: int | None,
               search: bool) -> list[tuple[Face, np.ndarray]]:
        fs = self.model.config.frame_scale
        first = np.stack([square_box(d.box if d.landmark_box is None else d.landmark_box, fs) for d in dets])
        if not self.recentre:
            frames, proxies = first, self._proxies(images, first)
            g = self.model.run_global(proxies, self.flip)
        else:
            # the passes only propose frames: they run without the mirrored half, which every face gets once, on
            # its final frame (no mirrored pass is spent on a frame that is replaced)
            passes = self.recentre_passes if passes is None else passes
            frames, proxies, g, mirrored = self._settle(images, first, passes)
            lost = np.flatnonzero(_confidence(g) < self.lost_face) if search else np.zeros(0, np.int64)
            for shrink in SEARCH_SHRINK:  # a frame far larger than its face: points spread over it, unsure
                if not len(lost):
                    break
                f2, p2, g2, m2 = self._settle([images[i] for i in lost], square_box(first[lost], shrink), passes)
                better = np.flatnonzero(_confidence(g2) > _confidence(g)[lost])
                index = torch.as_tensor(lost[better], device=self.device)
                frames = frames.copy()
                frames[lost[better]] = f2[better]
                proxies[index] = p2[torch.as_tensor(better, device=self.device)]
                g = _replace(g, g2.rows(torch.as_tensor(better, device=self.device)), index)
                mirrored.take(lost[better], m2, better)
                lost = lost[_confidence(g)[lost] < self.lost_face]
            if self.flip:
                g = mirrored.complete(g, proxies)
        out = self._run(images, frames, g)
        final = out["final"].float().cpu().numpy().astype(np.float64)
        if self.shape is not None:
            c, unrefined = self.model.config.shape_prior, self.scheme.unrefined_indices
            final = np.stack([regularise(f, self.shape, unrefined, c.weight, c.blend, c.prior) for f in final])
        glob = out["global"][-1].float().cpu().numpy().astype(np.float64)
        shift = self.model.config.mirror_shift(final)[:, None]  # the annotations' convention (see ModelConfig)
        final[..., 0] += shift
        glob[..., 0] += shift
        scores = out["scores"].float().cpu().numpy().astype(np.float64)
        q = quality(scores, *self.quality_map)
        return [(Face(d.box, float(d.score), final[k], scores[k], quality=float(q[k])), glob[k])
                for k, d in enumerate(dets)]

    def _settle(self, images: Sequence[np.ndarray], frames: np.ndarray,
                passes: int) -> tuple[np.ndarray, torch.Tensor, StageOutput, "_Mirrored"]:
        """Global passes (plain, unmirrored points) from `frames`, each re-framing the faces whose points proposed a
        frame that moved by more than `recentre_tolerance` of the side, at most `passes` passes: the final frames,
        their proxies, the last pass's output and the mirrored averages already made (see _Mirrored).

        With flip, a re-framing pass of few faces runs their mirrored proxies in the same call: a network call is
        bound by its per-operator cost up to `rows_per_call` rows, so the mirrored half rides almost free, and the
        first pass's frame (the detector's estimate) is rarely the last."""
        fs = self.model.config.frame_scale
        proxies = self._proxies(images, frames)
        g = self.model.run_global(proxies)
        mirrored = _Mirrored(self.model, len(frames))
        active = np.arange(len(frames))
        rows = self.model.rows_per_call
        for _ in range(passes - 1):
            pts = self._to_image(g.points[torch.as_tensor(active, device=self.device)], frames[active])
            proposed = _recentred(frames[active], square_box(points_box(pts), fs))
            moved = _move(frames[active], proposed) > self.recentre_tolerance
            if not moved.any():
                break
            active = active[moved]
            frames = frames.copy()
            frames[active] = proposed[moved]
            index = torch.as_tensor(active, device=self.device)
            proxies[index] = self._proxies([images[i] for i in active], frames[active])
            if self.flip and (rows is None or 2 * len(active) <= rows):
                plain, averaged = self.model.run_global_mirrored(proxies[index])
                mirrored.put(active, averaged)
            else:  # no earlier pass made a mirrored average for these: active faces only ever get fewer
                plain = self.model.run_global(proxies[index])
            g = _replace(g, plain, index)
        return frames, proxies, g, mirrored

    def _proxies(self, images: Sequence[np.ndarray], frames: np.ndarray) -> torch.Tensor:
        p = self.model.config.proxy_size
        return torch.cat([crop_u8(im, fr[None], p, self.device) for im, fr in zip(images, frames)])

    def _to_image(self, proxy_points: torch.Tensor, frames: np.ndarray) -> np.ndarray:
        f = torch.as_tensor(frames, dtype=torch.float32, device=self.device)
        return local_to_box(proxy_points, f, self.model.config.proxy_size).cpu().numpy().astype(np.float64)

    def _run(self, images: Sequence[np.ndarray], frames: np.ndarray, g: StageOutput) -> dict:
        s = self.model.config.crop_size

        def crop(boxes: torch.Tensor) -> torch.Tensor:
            b = boxes.cpu().numpy()  # one transfer for all faces: windows are cut on the host
            return torch.stack([crop_u8(im, bx, s, self.device) for im, bx in zip(images, b)])

        f = torch.as_tensor(frames, dtype=torch.float32, device=self.device)
        return self.model.infer(None, f, crop, global_out=g, flip=self.flip)


#: on a CPU each network call takes at most this many faces (or crops): the activations of more no longer fit in a
#: core's cache, and a face costs ~25 % more at 8 a call than at 4 on one thread (docs/benchmarks.md)
CPU_ROWS = 4
#: a face whose global points' mean confidence (heatmap peak mass) is below this has not been found in its frame
LOST_FACE = 0.15
DOUBT_SIZE = 64.0  # px: the smallest best face whose low quality makes --rotations auto look at other orientations
#: the frames tried, relative to the first, for such a face: a box far larger than the face it holds
SEARCH_SHRINK = (0.6, 0.36)


def _confidence(g: StageOutput) -> np.ndarray:
    """Each face's mean point confidence in a global pass."""
    return g.scores.float().mean(dim=1).cpu().numpy()


def _move(frames: np.ndarray, proposed: np.ndarray) -> np.ndarray:
    """How far each proposed frame is from its frame: the larger of the centre's shift (per axis) and the change
    of side, as a fraction of the side."""
    side = frames[:, 2] - frames[:, 0]
    shift = np.abs((proposed[:, :2] + proposed[:, 2:]) / 2 - (frames[:, :2] + frames[:, 2:]) / 2).max(axis=1)
    resize = np.abs(proposed[:, 2] - proposed[:, 0] - side)
    return np.maximum(shift, resize) / side


class _Mirrored:
    """The mirrored averages (run_global with flip) of faces whose final frame's pass already made one, by face."""

    def __init__(self, model, count: int) -> None:  # noqa: ANN001 (a served LandmarkNet)
        self.model = model
        self.rows: list[StageOutput | None] = [None] * count

    def put(self, faces: np.ndarray, averaged: StageOutput) -> None:
        for k, i in enumerate(faces):
            self.rows[i] = averaged.rows(slice(k, k + 1))

    def take(self, faces: np.ndarray, other: "_Mirrored", theirs: np.ndarray) -> None:
        """Faces `faces` take the averages of `other`'s faces `theirs` (frames replaced by the lost-face search)."""
        for i, j in zip(faces, theirs):
            self.rows[i] = other.rows[j]

    def complete(self, g: StageOutput, proxies: torch.Tensor) -> StageOutput:
        """Every face's mirrored average: the ones made, and the others' from one call on their proxies."""
        todo = [i for i, r in enumerate(self.rows) if r is None]
        if todo:
            index = torch.as_tensor(todo, device=proxies.device)
            done = self.model.run_global(proxies[index], True, direct=g.rows(index))
            for k, i in enumerate(todo):
                self.rows[i] = done.rows(slice(k, k + 1))
        return StageOutput.cat(self.rows)


def _replace(g: StageOutput, again: StageOutput, index: torch.Tensor) -> StageOutput:
    """`g` with the faces at `index` taken from `again` (the second global pass)."""
    def put(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a = a.clone()
        a[index] = b
        return a

    return StageOutput(put(g.points, again.points), put(g.scores, again.scores),
                       [put(a, b) for a, b in zip(g.stack_points, again.stack_points)])


def _recentred(frames: np.ndarray, proposed: np.ndarray, max_scale: float = 1.6, max_shift: float = 0.35) -> np.ndarray:
    """The frames proposed by the first pass's landmarks, kept within max_scale× and max_shift·side of
    the detector's: a first pass that went astray (no face in the box) cannot run off with the frame."""
    side = frames[:, 2] - frames[:, 0]
    centre = (frames[:, :2] + frames[:, 2:]) / 2
    new_side = np.clip(proposed[:, 2] - proposed[:, 0], side / max_scale, side * max_scale)
    shift = np.clip((proposed[:, :2] + proposed[:, 2:]) / 2 - centre, -max_shift * side[:, None], max_shift * side[:, None])
    c = centre + shift
    return np.concatenate([c - new_side[:, None] / 2, c + new_side[:, None] / 2], axis=1)
