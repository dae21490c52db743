"""Video end to end: the overlay video's round trip, Landmarker.track and `fflm batch` on a clip made from the
sample portrait (shipped weights and detector), and the video options' usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED, needs_shared, run_cli

from fflm.outputs import ImageResult, read_csv
from fflm.pipeline import Face
from fflm.scheme import IBUG68
from fflm.videoout import OverlayVideo

FPS = 12.5


def read_back(path: Path) -> tuple[int, tuple[int, int], float, list[np.ndarray]]:
    cap = cv2.VideoCapture(str(path))
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return len(frames), size, fps, frames


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_overlay_video_round_trip_frame_count_size_and_rate(tmp_path, suffix):
    path = tmp_path / "sub" / f"out{suffix}"
    video = OverlayVideo(path, FPS, IBUG68)
    face = Face(np.array([10.0, 8.0, 50.0, 40.0]), 0.9, np.full((68, 2), 30.0), np.ones(68), track=3)
    results = [ImageResult("c.avi", 64, 48, [face], frame=k) for k in range(7)]
    for r in reversed(results):  # drawn in any order (worker threads), written in frame order
        video.visit(r, np.full((48, 64, 3), 20 * r.frame, np.uint8))
    for r in results:
        video.emit(r)
    assert not path.exists()  # the file appears when complete
    video.close()
    n, size, fps, frames = read_back(path)
    assert (n, size, fps) == (7, (64, 48), FPS)
    assert [int(np.median(f)) for f in frames] == pytest.approx([20 * k for k in range(7)], abs=3)
    assert frames[0][30, 30].max() > 150 and frames[0][5, 5].max() < 30  # the points are drawn on the frame
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_overlay_video_scales_a_frame_of_another_size_and_skips_failed_frames(tmp_path):
    video = OverlayVideo(tmp_path / "o.avi", FPS, IBUG68)
    for k, (w, h) in enumerate([(64, 48), (32, 24), (64, 48)]):
        r = ImageResult("c.avi", w, h, [], frame=k)
        video.visit(r, np.zeros((h, w, 3), np.uint8))
        video.emit(r)
    video.emit(ImageResult("c.avi", frame=3, error="bad frame"))
    video.close()
    assert read_back(tmp_path / "o.avi")[:2] == (3, (64, 48))


def test_overlay_video_names(tmp_path):
    with pytest.raises(ValueError, match="cannot write a video as '.gif'"):
        OverlayVideo(tmp_path / "o.gif", FPS, IBUG68)
    video = OverlayVideo(tmp_path / "o.mp4", FPS, IBUG68)
    video.close()  # no frame came: nothing written
    assert not (tmp_path / "o.mp4").exists()


# --- with the shipped models ---------------------------------------------------------------------------------

SHIFT = 1.5  # px a frame


@pytest.fixture(scope="module")
def portrait_frames() -> list[np.ndarray]:
    """Six 256×256 frames of the sample portrait (half size), moving SHIFT px a frame to the right."""
    img = cv2.imread(str(SHARED / "data" / "samples" / "astronaut.png"))[:, :, ::-1]
    small = cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)
    m = np.float32([[1, 0, 0], [0, 1, 0]])
    return [cv2.warpAffine(small, m + np.float32([[0, 0, SHIFT * k], [0, 0, 0]]), (256, 256),
                           flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT) for k in range(6)]


@pytest.fixture(scope="module")
def clip(portrait_frames, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "portrait.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (256, 256))
    for f in portrait_frames:
        vw.write(np.ascontiguousarray(f[:, :, ::-1]))
    vw.release()
    return path


@pytest.fixture(scope="module")
def landmarker():
    from fflm.pipeline import Landmarker

    return Landmarker(device="cpu", flip=False)


@needs_shared
def test_landmarker_track_follows_the_one_face_with_one_id(landmarker, portrait_frames, clip):
    faces = list(landmarker.track(portrait_frames, detect_every=4))
    assert [[f.track for f in fs] for fs in faces] == [[0]] * 6
    centres = np.array([fs[0].landmarks.mean(0) for fs in faces])
    assert np.allclose(np.diff(centres[:, 0]), SHIFT, atol=0.5) and np.allclose(np.diff(centres[:, 1]), 0, atol=0.5)
    from_file = list(landmarker.track(clip))
    assert [[f.track for f in fs] for fs in from_file] == [[0]] * 6
    assert np.abs(np.array([fs[0].landmarks.mean(0) for fs in from_file]) - centres).max() < 1.5  # MJPG's loss


@needs_shared
def test_a_tracked_frame_runs_the_global_network_once_and_its_mirrored_pass_once(portrait_frames, monkeypatch):
    """With the mirrored passes on: a face framed from its own landmarks (every frame after the first, the
    detection frame 4 too) goes through the global network twice (one pass, one mirrored pass); the detector's
    frame (frame 0) and predict on any frame still settle the frame in more passes. The face keeps its id."""
    from fflm.pipeline import Landmarker
    from fflm.tracking import Tracker

    lm = Landmarker(device="cpu")
    calls: list[int] = []  # the proxies of each call of the global network
    real = lm.model._run
    monkeypatch.setattr(lm.model, "_run", lambda net, head, x: (calls.append(len(x)) if net is lm.model.global_net
                                                                else None) or real(net, head, x))
    per_frame, tracked, ids = [], [], []
    for f in portrait_frames:
        calls.clear()
        lm.predict(f)
        per_frame.append(sum(calls))
    tracker = Tracker(lm, detect_every=4)
    for k, f in enumerate(portrait_frames):
        calls.clear()
        ids.append([face.track for face in tracker.update(f, k / FPS)])
        tracked.append(sum(calls))
    assert ids == [[0]] * 6 and tracker.detections == 2  # frames 0 and 4
    assert [n for k, n in enumerate(tracked) if k != 0] == [2] * 5  # frame 4's face is framed from its landmarks
    assert tracked[0] == per_frame[0] >= 3  # the detector's frame: its passes settle it, as predict's do
    assert min(per_frame) >= 3


@needs_shared
def test_batch_tracks_a_video_with_timestamps_and_writes_the_overlay_video(capsys, clip, tmp_path):
    overlay = tmp_path / "o.mp4"
    rc, out, err = run_cli(capsys, "batch", clip, "-f", "jsonl", "--smooth", "--overlay", overlay, "--no-flip")
    assert rc == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["frame"], r["time_ms"]) for r in rows] == [(k, k * 80.0) for k in range(6)]
    assert [[f["track"] for f in r["faces"]] for r in rows] == [[0]] * 6
    assert read_back(overlay)[:3] == (6, (256, 256), FPS)
    rc, out, _ = run_cli(capsys, "batch", clip, "-f", "csv", "--no-track", "--no-flip")
    assert rc == 0
    rows = read_csv(out)
    assert [(r["image"], r["track"], r["time_ms"]) for r in rows] == [(f"{clip}#{k}", None, k * 80.0) for k in range(6)]


def test_batch_video_options_need_a_video_and_tracking(capsys, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((8, 8, 3), np.uint8))
    video = tmp_path / "v.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (16, 16))
    vw.write(np.zeros((16, 16, 3), np.uint8))
    vw.release()
    for args, text in [((folder, "--smooth"), "are for a video input"),
                       ((video, "--smooth", "--no-track"), "need tracking"),
                       ((video, "--detect-every", "4", "--detector", "none"), "need tracking"),
                       ((video, "--overlay", tmp_path / "o.gif"), "cannot write a video as '.gif'"),
                       ((video, "--detect-every", "0"), "--detect-every")]:
        rc, _, err = run_cli(capsys, "batch", *args)
        errors = [line for line in err.splitlines() if "error" in line]
        assert rc == 2 and len(errors) == 1 and text in errors[0], (args, err)


def test_a_camera_index_is_one_clear_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(capsys, "batch", "0")
    assert rc == 1 and err.strip() == "fflm: error: camera input (0) is not available: fflm batch reads a folder or a video file"
