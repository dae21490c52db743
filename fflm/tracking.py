"""Faces tracked through a video: each face keeps an id, and the detector is spared on most frames.

The detector runs on the first frame, every `detect_every` frames, on the frame after a track was lost or fell
in quality, and after a scene cut (a frame unlike the one before it as a whole): whenever a face may have come
or gone. While tracks are live the video is known to be upright, so `--rotations auto` looks only at the frame
as it is. In between, each face is framed from its own previous landmarks: their box, moved by the face's last
motion, is the `landmark_box` the landmark stage frames a face from (with their roll, for a face rolled far:
fflm.upright). Such a face is already framed on itself, so the landmark stage spends less on it than on a
detector's box: at most `TRACKED_PASSES` global passes and no lost-face search. With one pass the re-centring
happens from frame to frame (each frame's points frame the next) instead of within the frame; a face lost in its
frame scores low, and the detector looks on the next frame. Faces framed from a detector's box (new faces, and
tracks that drifted off their face) get the landmark stage's full treatment.
Detections are matched to tracks greedily by IoU; a detection no track matches starts a track, and a track the
detector misses goes on. A track ends when its landmark quality falls below `min_quality` or the face leaves the
picture (unless the detector finds the face on that frame: a hard face, or one half out of the picture, keeps its
id while the detector, run on every frame then, finds it), at a scene cut, or when the frame size changes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from fflm.choices import DETECT_EVERY
from fflm.detect import Detection
from fflm.detect.rotations import RotatingDetector
from fflm.errors import UsageError
from fflm.geometry import box_iou, face_size, points_box
from fflm.imageio import to_rgb8, video_fps, video_frames
from fflm.outputs import ImageResult
from fflm.smoothing import OneEuro, OneEuroParams
from fflm.upright import MIN_ROLL, TRUSTED_QUALITY, points_detection

DEFAULT_DETECT_EVERY = DETECT_EVERY  # frames between detections (docs/video.md: speed and missed faces against N)
MIN_QUALITY = 0.2  # a tracked face below this landmark quality has lost its face (real faces score ~0.4-0.5)
MATCH_IOU = 0.3  # least IoU of a detection with a track's predicted box for them to be one face
REFRAME_IOU = 0.5  # below this (but matched), the detector's frame replaces the track's own
DUPLICATE_IOU = 0.6  # two tracks whose landmarks' boxes overlap this much are one face: the younger ends
CUT_DIFFERENCE = 45.0  # mean absolute difference (0-255) of 64×36 grey thumbnails that makes a scene cut
MIN_SIDE = 4.0  # pixels: a landmarks' box smaller than this is no face
TRACKED_PASSES = 1  # global passes at most for a face framed from its own landmarks (docs/video.md: speed, error)


def face_quality(face) -> float:
    """How far a face's landmarks can be trusted, in [0, 1]: the Face's own `quality` where it has one, else
    the mean of its per-landmark scores."""
    q = getattr(face, "quality", None)
    return float(np.mean(face.landmark_scores)) if q is None else float(q)


@dataclass
class _Track:
    """One tracked face: its id, last raw landmarks and motion, the detector box relative to the landmarks'
    box (so frames between detections report a box of the detector's kind), and its smoothing filter."""

    id: int
    landmarks: np.ndarray
    box_rel: np.ndarray
    score: float
    smoother: OneEuro | None
    shift: np.ndarray = None  # the landmarks' centre motion over the last frame, pixels
    quality: float = 0.0  # the last landmarks' face_quality
    sure: bool = False  # the last landmarks were of quality and in the picture

    def predicted(self) -> np.ndarray:
        """The landmarks' box expected on the next frame (constant velocity)."""
        return self._moved(points_box(self.landmarks))

    def _moved(self, box: np.ndarray) -> np.ndarray:
        return box if self.shift is None else box + np.tile(self.shift, 2)

    def framing(self, norm_points: tuple[int, int]) -> Detection:
        """The detection the next frame frames this face from: its predicted landmarks' box and, for a face rolled
        by MIN_ROLL or more whose last landmarks are trusted with their roll (quality TRUSTED_QUALITY or more, as
        the landmark stage trusts them), their roll and their box in the upright frame (moved as the face moved),
        so the landmark stage cuts it out upright at once (fflm.upright) rather than in a second round."""
        lb = self.predicted()
        d = Detection(self.box(lb), self.score, lb)
        if self.quality < TRUSTED_QUALITY:
            return d
        turned = points_detection(self.landmarks, norm_points, d)
        if abs(turned.roll) < MIN_ROLL:
            return d
        return Detection(d.box, d.score, self._moved(turned.landmark_box), None, turned.roll)

    def box(self, landmark_box: np.ndarray) -> np.ndarray:
        """The detector-style box of a face whose landmarks' box is `landmark_box`."""
        c, wh = (landmark_box[:2] + landmark_box[2:]) / 2, landmark_box[2:] - landmark_box[:2]
        return np.concatenate([c, c]) + self.box_rel * np.tile(wh, 2)


def _relative(box: np.ndarray, landmark_box: np.ndarray) -> np.ndarray:
    """`box` in units of `landmark_box`: offsets from its centre over its width and height (inverse of _Track.box)."""
    c, wh = (landmark_box[:2] + landmark_box[2:]) / 2, np.maximum(landmark_box[2:] - landmark_box[:2], 1e-9)
    return (np.asarray(box, np.float64) - np.concatenate([c, c])) / np.tile(wh, 2)


def greedy_match(a: np.ndarray, b: np.ndarray, min_iou: float) -> list[tuple[int, int, float]]:
    """Pairs (i, j, IoU) of boxes a[i], b[j], best IoU first, each box used once, IoU above `min_iou`."""
    if len(a) == 0 or len(b) == 0:
        return []
    iou = box_iou(a, b)
    pairs, used_a, used_b = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] <= min_iou:
            break
        if i not in used_a and j not in used_b:
            pairs.append((int(i), int(j), float(iou[i, j])))
            used_a.add(i)
            used_b.add(j)
    return pairs


def _thumbnail(image: np.ndarray) -> np.ndarray:
    """A 64×36 grey picture of the frame, for telling scene cuts."""
    small = cv2.resize(image, (64, 36), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _in_picture(landmarks: np.ndarray, width: int, height: int) -> bool:
    """Whether a face is still in the picture: its landmarks' centre inside, and at least half its points."""
    inside = ((landmarks >= -0.5) & (landmarks <= [width - 0.5, height - 0.5])).all(axis=1)
    b = points_box(landmarks)
    c = (b[:2] + b[2:]) / 2
    big = min(b[2] - b[0], b[3] - b[1]) >= MIN_SIDE
    return bool(big and inside.mean() >= 0.5 and -0.5 <= c[0] <= width - 0.5 and -0.5 <= c[1] <= height - 0.5)


class Tracker:
    """Frame-by-frame tracking with a Landmarker (anything with `detector.detect(image)`, `scheme.norm_points` and
    `landmarks(images, detections, passes=None, search=True)`). `update(image, t)` returns the frame's faces, each
    with its `track` id, in id order; `t` (seconds) times the smoothing."""

    def __init__(self, landmarker, detect_every: int = DEFAULT_DETECT_EVERY, smooth: OneEuroParams | None = None,
                 min_quality: float = MIN_QUALITY) -> None:
        if detect_every < 1:
            raise UsageError(f"detect_every must be at least 1, got {detect_every}")
        self.landmarker = landmarker
        self.detect_every = detect_every
        self.smooth = smooth
        self.min_quality = min_quality
        self.detections = 0  # frames the detector ran on
        self._ids = itertools.count()
        self._tracks: list[_Track] = []
        self._size: tuple[int, int] | None = None
        self._thumb: np.ndarray | None = None
        self._since = detect_every  # frames since the last detection: the first frame is detected
        self._lost = False  # a face was lost or is in doubt: detect on the next frame

    def update(self, image: np.ndarray, t: float) -> list:
        h, w = image.shape[:2]
        if (w, h) != self._size:  # a new frame size: the faces seen so far are gone
            self._tracks, self._size, self._thumb, self._lost = [], (w, h), None, True
        thumb = _thumbnail(image)
        cut = self._thumb is not None and float(np.abs(thumb - self._thumb).mean()) > CUT_DIFFERENCE
        self._thumb = thumb
        if cut:  # another scene: its faces are new ones, wherever they are
            self._tracks = []
        tracks = self._tracks
        inputs = [tr.framing(self.landmarker.scheme.norm_points) for tr in tracks]
        owners: list[_Track | None] = list(tracks)
        own = [True] * len(tracks)  # framed from the track's own landmarks (else from a detector's box)
        confirmed: set[int] = set()
        if cut or self._lost or self._since + 1 >= self.detect_every:
            dets = self._detect(image)
            self.detections += 1
            self._since, self._lost = 0, False
            pairs = greedy_match(np.array([d.box for d in inputs]).reshape(-1, 4),
                                 np.array([d.box for d in dets]).reshape(-1, 4), MATCH_IOU)
            for i, j, iou in pairs:
                confirmed.add(i)
                tracks[i].score = float(dets[j].score)
                if iou < REFRAME_IOU:  # the track has drifted from its face: frame it from the detection again
                    inputs[i], own[i] = dets[j], False
                else:
                    inputs[i] = Detection(dets[j].box, dets[j].score, inputs[i].landmark_box, None, inputs[i].roll)
            matched = {j for _, j, _ in pairs}
            fresh = [d for j, d in enumerate(dets) if j not in matched]
            inputs += fresh
            owners += [None] * len(fresh)
            own += [False] * len(fresh)
            confirmed |= set(range(len(owners) - len(fresh), len(owners)))
        else:
            self._since += 1
        faces = self._landmarks(image, inputs, own)
        self._tracks, out = [], []
        for k, (owner, det, face) in enumerate(zip(owners, inputs, faces)):
            detected = k in confirmed
            quality = face_quality(face)
            sure = quality >= self.min_quality and _in_picture(face.landmarks, w, h)
            # a face of low quality, or partly out of the picture, that the detector found goes on, but the
            # detector looks again on the next frame
            if not sure:
                self._lost = True
                if not detected:
                    continue
            raw = face.landmarks
            lbox = points_box(raw)
            if owner is None:
                owner = _Track(next(self._ids), raw, _relative(det.box, lbox), float(det.score),
                               OneEuro(self.smooth) if self.smooth is not None else None)
            elif detected:
                owner.box_rel = _relative(det.box, lbox)
            before = points_box(owner.landmarks)
            # motion between two sure frames only: points off their face (low quality, out of the picture) would
            # send the next frame off after them, onto a neighbour
            owner.shift = (lbox[:2] + lbox[2:] - before[:2] - before[2:]) / 2 if sure and owner.sure else None
            owner.sure = sure
            owner.landmarks, owner.quality = raw, quality
            if owner.smoother is not None:
                face.landmarks = owner.smoother(raw, t, float(face_size(lbox)))
            face.box = np.asarray(det.box, np.float64) if detected else owner.box(points_box(face.landmarks))
            face.score = owner.score
            face.track = owner.id
            self._tracks.append(owner)
            out.append(face)
        self._drop_duplicates(out)
        out.sort(key=lambda f: f.track)
        return out

    def _detect(self, image: np.ndarray) -> list[Detection]:
        """The detector's faces. While tracks are live the video is known to be upright, so a detector that looks
        at turned copies of a frame without a sure face (fflm.detect.rotations, `--rotations auto`) runs only its
        pass on the frame as it is."""
        detector = self.landmarker.detector
        if self._tracks and isinstance(detector, RotatingDetector) and detector.mode == "auto":
            return detector.inner.detect(image)
        return detector.detect(image)

    def _landmarks(self, image: np.ndarray, inputs: list[Detection], own: list[bool]) -> list:
        """The faces of `inputs` in input order: those framed from their own landmarks (`own`) through the landmark
        stage together with TRACKED_PASSES passes and no lost-face search, the others with the stage's defaults."""
        faces: list = [None] * len(inputs)
        for tracked in (True, False):
            index = [k for k, o in enumerate(own) if o == tracked]
            if not index:
                continue
            options = {"passes": TRACKED_PASSES, "search": False} if tracked else {}
            # one face per "image": the faces come back in input order, all through the networks together
            found = self.landmarker.landmarks([image] * len(index), [[inputs[k]] for k in index], **options)
            for k, [face] in zip(index, found):
                faces[k] = face
        return faces

    def _drop_duplicates(self, faces: list) -> None:
        """Two tracks on one face: the younger (higher id) ends, and its face is not reported."""
        self._tracks.sort(key=lambda tr: tr.id)
        kept: list[_Track] = []
        for tr in self._tracks:
            b = points_box(tr.landmarks)[None]
            if kept and box_iou(np.stack([points_box(k.landmarks) for k in kept]), b).max() > DUPLICATE_IOU:
                faces[:] = [f for f in faces if f.track != tr.id]
                continue
            kept.append(tr)
        self._tracks = kept


def _frames(frames: str | Path | Iterable[np.ndarray], fps: float | None) -> tuple[Iterator[tuple[int, np.ndarray]], float]:
    """(frame number, RGB frame) pairs and the frame rate (the file's, else `fps`, else 30)."""
    if isinstance(frames, (str, Path)):
        return video_frames(frames), fps or video_fps(frames) or 30.0
    return ((n, to_rgb8(f)) for n, f in enumerate(frames)), fps or 30.0


def track_frames(landmarker, frames: str | Path | Iterable[np.ndarray], detect_every: int | None = None,
                 smooth: OneEuroParams | None = None, fps: float | None = None) -> Iterator[list]:
    """Each frame's faces with their track ids (Landmarker.track)."""
    tracker = Tracker(landmarker, detect_every or DEFAULT_DETECT_EVERY, smooth)
    pairs, rate = _frames(frames, fps)
    for n, image in pairs:
        yield tracker.update(image, n / rate)


Visit = Callable[[ImageResult, np.ndarray], None]


def video_results(landmarker, path: str | Path, detect_every: int | None = None, smooth: OneEuroParams | None = None,
                  visit: Visit | None = None) -> Iterator[ImageResult]:
    """`fflm batch` on a video with tracking: one ImageResult per frame, in order; `visit(result, pixels)` sees
    each frame once its faces are known (overlays)."""
    fps = video_fps(path)
    tracker = Tracker(landmarker, detect_every or DEFAULT_DETECT_EVERY, smooth)
    for n, image in video_frames(path):
        t = n / (fps or 30.0)
        result = ImageResult(str(path), image.shape[1], image.shape[0], tracker.update(image, t), frame=n,
                             time_ms=n * 1000.0 / fps if fps else None)
        if visit is not None:
            try:
                visit(result, image)
            except (ValueError, OSError) as e:  # an overlay that cannot be written: that frame fails
                result.error = str(e)
        yield result


def batch_results(landmarker, source: str | Path, per_frame: Callable[[Visit | None], Iterable[ImageResult]],
                  track: bool, detect_every: int | None, smooth: bool, visit: Visit | None,
                  overlay: str | Path | None, scheme) -> Iterator[ImageResult]:
    """`fflm batch`'s results for a video: tracked (or `per_frame(visit)`, the frame-by-frame run), with each
    frame also drawn into the `overlay` video when one is asked for. The overlay file appears once the run is
    complete."""
    from fflm.videoout import OverlayVideo

    video = OverlayVideo(overlay, video_fps(source), scheme) if overlay is not None else None
    visits = [v for v in (visit, None if video is None else video.visit) if v is not None]

    def both(result: ImageResult, pixels: np.ndarray) -> None:
        for v in visits:
            v(result, pixels)

    seen = both if visits else None
    results = (video_results(landmarker, source, detect_every, OneEuroParams() if smooth else None, seen) if track
               else per_frame(seen))
    try:
        for r in results:
            if video is not None:
                video.emit(r)
            yield r
    except BaseException:
        if video is not None:
            video.discard()
        raise
    if video is not None:
        video.close()


def option_problem(video: bool, track: bool, smooth: bool, detect_every: int | None,
                   overlay: str | Path | None) -> str | None:
    """What is wrong with `fflm batch`'s video options, or None (`overlay`: the annotated video's path)."""
    from fflm.videoout import check_video_path

    if not video and (overlay is not None or smooth or detect_every is not None):
        return "--overlay FILE, --smooth and --detect-every are for a video input"
    if not track and (smooth or detect_every is not None):
        return "--smooth and --detect-every need tracking: a face detector (not --boxes or --detector none), no --no-track"
    if overlay is not None:
        try:
            check_video_path(overlay)
        except ValueError as e:
            return str(e)
    return None
