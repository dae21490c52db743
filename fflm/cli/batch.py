"""`fflm batch`: a folder of images or a video, with progress, overlapped decoding and a summary."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from fflm.choices import DETECT_EVERY
from fflm.cli.app import BoxesOpt, Format, FormatOpt, OutOpt, app, err, existing, message, usage
from fflm.cli.scale import AddressOpt, EngineOpt, GpusOpt, NumWorkersOpt, check_engine, ray_results
from fflm.cli.common import DETECTION, LandmarkerOptions, landmarker_options

EXAMPLES = """
Examples:

  fflm batch ./frames/ --format csv --out frames.csv

  fflm batch ./shoot/ -r -f jsonl -o shoot.jsonl --overlay overlays/

  fflm batch clip.mp4 -o clip.json          frames are numbered from 0, faces tracked

  fflm batch clip.mp4 --smooth --overlay clip.fflm.mp4 -o clip.csv

  fflm batch ./crops/ --format pts --out pts/
"""


@app.command(epilog=EXAMPLES)
@landmarker_options(*DETECTION)
def batch(
    source: Path = typer.Argument(..., metavar="SOURCE", help="A folder of images or a video file.", show_default=False),
    out: Path = OutOpt,
    fmt: Format = FormatOpt,
    overlay: Path = typer.Option(None, "--overlay", metavar="PATH", help="Write an overlay image per input "
                                 "into this folder (never read back as an input); for a video, a name with an extension is "
                                 "an annotated video (boxes, points, track ids; .mp4, .mov, .m4v or .avi, .mkv)."),
    overlay_dir: Path = typer.Option(None, "--overlay-dir", hidden=True),  # the older name of --overlay
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Include images in sub-folders."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, max=256, metavar="N", help="Images per network batch."),
    jobs: int = typer.Option(2, "--jobs", "-j", min=1, max=64, metavar="N", help="Batches in flight, each in its own "
                             "thread through decoding, detection and the networks."),
    workers: int = typer.Option(None, "--workers", min=1, max=64, hidden=True),  # the older name of --jobs
    boxes: Path = BoxesOpt,
    *,
    opts: LandmarkerOptions,
    track: bool = typer.Option(True, "--track/--no-track", help="Video: follow each face from frame to frame (an id "
                               "per face, the detector only every --detect-every frames); --no-track detects on every frame."),
    detect_every: int = typer.Option(None, "--detect-every", min=1, metavar="N", help="Video with tracking: run the detector every N "
                                     f"frames (and whenever a face is lost or the scene cuts). [default: {DETECT_EVERY}]"),
    smooth: bool = typer.Option(False, "--smooth", help="Video with tracking: One-Euro filter on each face's points "
                                "(steadier points, little lag; see docs/video.md)."),
    engine=EngineOpt,
    address: str = AddressOpt,
    num_workers: int = NumWorkersOpt,
    gpus_per_worker: float = GpusOpt,
) -> int:
    """Find landmarks on every image of a folder (sorted) or every frame of a video.

    A file or frame that cannot be read is reported, appears in JSON and JSON Lines with "error", and the
    exit code is then 1. JSON Lines and CSV are written as each image finishes; JSON when the run ends.
    Ctrl-C (or SIGTERM) stops cleanly: what finished is kept, exit code 130 (143).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from fflm import runner, tracking
    from fflm.cli.common import StopSignals, Stopped, boxes_source
    from fflm.cli.guard import Inputs, check_out, check_overlay_folder, output_format, stdout_if_dash
    from fflm.imageio import is_video_path, list_images, video_frame_count
    from fflm.outputs import overlay_writer
    from fflm.parquet import result_writer

    if str(source).isdigit() and not source.exists():  # a camera index, as OpenCV numbers cameras
        raise OSError(f"camera input ({source}) is not available: fflm batch reads a folder or a video file")
    existing([source])
    out = stdout_if_dash(out)
    fmt = output_format(fmt, out)
    overlay = _renamed(overlay, overlay_dir, "--overlay", "--overlay-dir")
    jobs = jobs if workers is None else workers
    video = is_video_path(source)
    # for a video, an --overlay with an extension is the annotated video; a folder gets an image per frame
    movie = overlay if video and overlay is not None and overlay.suffix and not overlay.is_dir() else None
    if source.is_dir():
        inputs = list_images(source, recursive, exclude=overlay)
        if not inputs:
            raise FileNotFoundError(f"no images in {source}" + ("" if recursive else " (try --recursive)"))
        total = len(inputs)
    elif is_video_path(source):
        inputs, total = [source], video_frame_count(source) or None
    else:
        raise usage(f"{source} is neither a folder nor a video file: use 'fflm detect' for single images")
    check_out(out, fmt)
    if out is not None:
        Inputs(inputs).refuse("--out", out)
    if overlay is not None and movie is None:
        check_overlay_folder(overlay)
    del inputs
    given = boxes_source(boxes, opts.detector)
    # a video is tracked when a detector finds its faces (not with --boxes or --detector none) unless --no-track
    track = track and video and given is None and opts.detector != "none"
    if problem := tracking.option_problem(video, track, smooth, detect_every, movie):
        raise usage(problem)
    check_engine(engine, video, overlay, address, num_workers, gpus_per_worker)
    lm = opts.landmarker()
    failed, faces, faceless, overlays_failed = 0, 0, 0, 0
    t0 = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:.1f} img/s"), TimeRemainingColumn())
    with StopSignals() as stop, Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(source.name, total=total, rate=0.0)
        writer = result_writer(fmt, out, lm.scheme.num_points)
        draw = None if movie is not None else overlay_writer(overlay, lm.scheme, True)

        def per_frame(visit):  # noqa: ANN001,ANN202
            return runner.run(lm, runner.source_items(source, recursive, exclude=None if video else overlay),
                              given, batch_size, jobs, visit)

        if engine == "ray":
            stream = ray_results(source, recursive, opts, given, batch_size, num_workers, gpus_per_worker)
        elif video:
            stream = tracking.batch_results(lm, source, per_frame, track, detect_every, smooth, draw, movie, lm.scheme)
        else:
            stream = per_frame(draw)
        try:
            for r in stream:
                if r.error is not None:
                    failed += 1
                    bar.console.print(f"fflm: skipped {r.label}: {r.error}", markup=False, soft_wrap=True)
                else:
                    faces += len(r.faces)
                    faceless += not r.faces
                if r.overlay_error is not None:
                    overlays_failed += 1
                    bar.console.print(f"fflm: {r.overlay_error} (the landmarks are kept)", markup=False, soft_wrap=True)
                writer.add(r)
                bar.update(task, completed=writer.count, rate=writer.count / max(time.perf_counter() - t0, 1e-9))
        except Stopped:
            pass
        writer.close(incomplete=None if stop.name is None else f"interrupted by {stop.name}")
    seconds = time.perf_counter() - t0
    n = writer.count
    stopped = "" if stop.name is None else f"interrupted by {stop.name} after {n} images: "
    message(f"fflm: {stopped}{n} images, {faces} faces, {faceless} with no face, {failed} failed"
            + (f", {overlays_failed} overlays not written" if overlays_failed else "")
            + f", {seconds:.1f} s ({n / max(seconds, 1e-9):.1f} img/s)" + (f"; wrote {out}" if out else ""))
    return stop.code or (1 if failed or overlays_failed else 0)


def _renamed(value, old_value, name: str, old_name: str):  # noqa: ANN001,ANN202
    """An option given by its current or its older name (not both)."""
    if old_value is None:
        return value
    if value is not None:
        raise usage(f"{old_name} is the older name of {name}: give one of them")
    return old_value
