"""`fflm batch`: a folder of images or a video, with progress, overlapped decoding and a summary."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from fflm.cli.app import (BoxesOpt, DetectorChoice, DetectorModelOpt, DetectorOpt, DetectorThresholdOpt, DeviceOpt,
                          FlipOpt, Format, MaxFacesOpt, MinFaceOpt, PrecisionOpt, TilesOpt, WeightsOpt, app, err, existing, message, usage)

EXAMPLES = """
Examples:

  fflm batch ./frames/ --format csv --out frames.csv

  fflm batch ./shoot/ --recursive --format jsonl --out shoot.jsonl --overlay-dir overlays/

  fflm batch clip.mp4 --format json --out clip.json      frames are numbered from 0, faces tracked

  fflm batch clip.mp4 --smooth --overlay clip.fflm.mp4 -o clip.csv

  fflm batch ./crops/ --format pts --out pts/
"""


@app.command(epilog=EXAMPLES)
def batch(
    source: Path = typer.Argument(..., help="A folder of images or a video file.", show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="Output file (a folder for --format pts); default: stdout."),
    fmt: Format = typer.Option(Format.csv, "--format", "-f", help="csv, json, jsonl or pts.", case_sensitive=False),
    overlay_dir: Path = typer.Option(None, "--overlay-dir", help="Write an overlay image per input into this folder."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Include images in sub-folders."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, max=256, help="Images per network batch."),
    workers: int = typer.Option(2, "--workers", "-j", min=1, max=64, help="Pipeline threads, each taking a batch through decoding, detection and the networks."),
    boxes: Path = BoxesOpt,
    weights: Path = WeightsOpt,
    device=DeviceOpt,
    detector=DetectorOpt,
    detector_model: Path = DetectorModelOpt,
    tiles: str = TilesOpt,
    max_faces: int = MaxFacesOpt,
    min_face_size: float = MinFaceOpt,
    flip: bool = FlipOpt,
    detector_threshold: float = DetectorThresholdOpt,
    precision=PrecisionOpt,
    track: bool = typer.Option(True, "--track/--no-track", help="Video: follow each face from frame to frame (an id "
                               "per face, the detector only every --detect-every frames); --no-track detects on every frame."),
    detect_every: int = typer.Option(None, "--detect-every", min=1, help="Video with tracking: run the detector every N "
                                     "frames (and whenever a face is lost or the scene cuts). [default: 8]"),
    smooth: bool = typer.Option(False, "--smooth", help="Video with tracking: One-Euro filter on each face's points "
                                "(steadier points, little lag; see docs/video.md)."),
    overlay: Path = typer.Option(None, "--overlay", help="Video: write an annotated video (boxes, points, track ids) of "
                                 "the same size and frame rate: .mp4, .mov, .m4v (mp4v) or .avi, .mkv (MJPG).", dir_okay=False),
) -> int:
    """Find landmarks on every image of a folder (sorted) or every frame of a video.

    A file that cannot be read is reported and skipped; the exit code is then 1, and the outputs hold
    every other image. Outputs are written atomically when the run ends.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from fflm import runner, tracking
    from fflm.cli.common import boxes_source, make_landmarker
    from fflm.imageio import is_video_path, list_images, video_frame_count
    from fflm.outputs import overlay_writer, write_results

    if str(source).isdigit() and not source.exists():  # a camera index, as OpenCV numbers cameras
        raise OSError(f"camera input ({source}) is not available: fflm batch reads a folder or a video file")
    existing([source])
    if fmt == Format.pts and out is None:
        raise usage("--format pts writes one file per face: give a folder with --out")
    if source.is_dir():
        total = len(list_images(source, recursive))
        if total == 0:
            raise FileNotFoundError(f"no images in {source}" + ("" if recursive else " (try --recursive)"))
    elif is_video_path(source):
        total = video_frame_count(source) or None
    else:
        raise usage(f"{source} is neither a folder nor a video file: use 'fflm detect' for single images")
    given = boxes_source(boxes, detector)
    # a video is tracked when a detector finds its faces (not with --boxes or --detector none) unless --no-track
    track = track and is_video_path(source) and given is None and detector != DetectorChoice.none
    if problem := tracking.option_problem(is_video_path(source), track, smooth, detect_every, overlay):
        raise usage(problem)
    lm = make_landmarker(weights, device, detector, detector_model, tiles, max_faces, min_face_size, flip,
                         detector_threshold, precision=precision)
    results, failures, faces, faceless = [], [], 0, 0
    t0 = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:.1f} img/s"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(source.name, total=total, rate=0.0)
        draw = overlay_writer(overlay_dir, lm.scheme, True)

        def per_frame(visit):
            return runner.run(lm, runner.source_items(source, recursive), given, batch_size, workers, visit)

        stream = (tracking.batch_results(lm, source, per_frame, track, detect_every, smooth, draw, overlay, lm.scheme)
                  if is_video_path(source) else per_frame(draw))
        for r in stream:
            if r.error is not None:
                failures.append(r)
                bar.console.print(f"fflm: skipped {r.label}: {r.error}", markup=False, soft_wrap=True)
            else:
                results.append(r)
                faces += len(r.faces)
                faceless += not r.faces
            done = len(results) + len(failures)
            bar.update(task, completed=done, rate=done / max(time.perf_counter() - t0, 1e-9))
    seconds = time.perf_counter() - t0
    text = write_results(results, fmt.value, out, lm.scheme.num_points)
    if text is not None:
        typer.echo(text, nl=False)
    n = len(results) + len(failures)
    message(f"fflm: {n} images, {faces} faces, {faceless} with no face, {len(failures)} failed, "
            f"{seconds:.1f} s ({n / max(seconds, 1e-9):.1f} img/s)" + (f"; wrote {out}" if out else ""))
    return 1 if failures else 0
