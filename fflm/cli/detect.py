"""`fflm detect`: landmarks on one or more images."""

from __future__ import annotations

from pathlib import Path

import typer

from fflm.cli.app import BoxesOpt, Format, FormatOpt, OutOpt, app, existing, message, usage
from fflm.cli.common import DETECTION, LandmarkerOptions, landmarker_options

EXAMPLES = """
Examples:

  fflm detect portrait.jpg                      JSON on stdout

  fflm detect photo_4k.jpg -o pts.json --overlay photo_4k.fflm.jpg

  fflm detect a.jpg b.png --format csv --out faces.csv

  fflm detect crop.jpg --format pts --out pts/  one 300-W .pts file per face

  cat photo.jpg | fflm detect -                 an image on stdin

  fflm detect group.jpg --boxes boxes.json      faces from {"group.jpg": \\[\\[x0, y0, x1, y1], ...]}
"""


OVERLAY_TYPES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@app.command(epilog=EXAMPLES)
@landmarker_options(*DETECTION)
def detect(
    images: list[Path] = typer.Argument(..., metavar="IMAGE", show_default=False,
                                        help="Image files, decoded by their content; - reads one from stdin."),
    out: Path = OutOpt,
    fmt: Format = FormatOpt,
    overlay: Path = typer.Option(None, "--overlay", metavar="PATH", help="Draw the faces: an image file (one "
                                 "input) or a folder (one NAME.fflm.jpg per input)."),
    boxes: Path = BoxesOpt,
    *,
    opts: LandmarkerOptions,
) -> int:
    """Find facial landmarks on images. Coordinates are original pixels, 0-based pixel centres.

    Every input appears in a JSON or JSON Lines output, one that failed with "error"; an output that is
    one of the inputs is refused before any work."""
    from fflm import runner
    from fflm.cli.common import StopSignals, Stopped, boxes_source
    from fflm.cli.guard import Inputs, check_out, check_overlay_folder, output_format, stdout_if_dash
    from fflm.fileio import check_writable, is_stream
    from fflm.imageio import STDIN, is_video_path
    from fflm.outputs import ImageResult, overlay_path, overlay_writer
    from fflm.parquet import result_writer

    out = stdout_if_dash(out)
    fmt = output_format(fmt, out)
    if [str(p) for p in images].count(STDIN) > 1:
        raise usage("stdin (-) can be read only once")
    files = [p for p in images if str(p) != STDIN]
    existing(files)
    for p in files:
        if p.is_dir():
            raise usage(f"{p} is a folder: use 'fflm batch {p}'")
        if is_video_path(p):
            raise usage(f"{p} is a video: use 'fflm batch {p}'")
    if (fmt == "pts" or overlay is not None) and len({p.stem for p in files}) < len(files):
        raise usage("two inputs share a file name, so their .pts/overlay files would collide: use 'fflm batch' on a folder")
    many = len(images) > 1
    inputs = Inputs(files)
    check_out(out, fmt)
    if out is not None:
        inputs.refuse("--out", out)
    if overlay is not None:
        one_file = not overlay.is_dir() and (is_stream(overlay) or overlay.suffix.lower() in OVERLAY_TYPES)
        if one_file and many:
            raise usage(f"--overlay {overlay} names one image, but there are {len(images)} inputs: give a folder")
        if not many and not one_file and overlay.suffix and not overlay.is_dir():
            raise usage(f"--overlay: cannot write a colour image as {overlay.suffix} (use {', '.join(OVERLAY_TYPES)})")
        if one_file:
            check_writable(overlay)
        else:
            check_overlay_folder(overlay)
        for item in runner.file_items(images):
            inputs.refuse("--overlay", overlay_path(overlay, ImageResult(item.image, name=item.name), many))
    given = boxes_source(boxes, opts.detector)
    lm = opts.landmarker()
    failed = 0
    draw = overlay_writer(overlay, lm.scheme, many)
    with StopSignals() as stop:
        writer = result_writer(fmt, out, lm.scheme.num_points, single=not many)
        try:
            for r in runner.run(lm, runner.file_items(images), given, batch_size=8, workers=2, visit=draw):
                if r.error is not None:
                    failed += 1
                    message(f"fflm: error: {r.error}")
                if r.overlay_error is not None:
                    failed += 1
                    message(f"fflm: error: {r.overlay_error} (the landmarks are kept)")
                writer.add(r)
        except Stopped:
            message(f"fflm: interrupted by {stop.name} after {writer.count} of {len(images)} images")
        writer.close(incomplete=None if stop.name is None else f"interrupted by {stop.name}")
    return stop.code or (1 if failed else 0)
