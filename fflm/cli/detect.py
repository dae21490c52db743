"""`fflm detect`: landmarks on one or more images."""

from __future__ import annotations

from pathlib import Path

import typer

from fflm.cli.app import (BoxesOpt, DetectorModelOpt, DetectorOpt, DetectorThresholdOpt, DeviceOpt, FlipOpt, Format,
                          MaxFacesOpt, MinFaceOpt, PrecisionOpt, TilesOpt, WeightsOpt, app, existing, message, usage)

EXAMPLES = """
Examples:

  fflm detect portrait.jpg                      JSON on stdout

  fflm detect photo_4k.jpg --out pts.json --overlay photo_4k.fflm.jpg

  fflm detect a.jpg b.png --format csv --out faces.csv

  fflm detect crop.jpg --format pts --out pts/  one 300-W .pts file per face

  fflm detect group.jpg --boxes boxes.json      faces from {"group.jpg": \\[\\[x0, y0, x1, y1], ...]}
"""


OVERLAY_TYPES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@app.command(epilog=EXAMPLES)
def detect(
    images: list[Path] = typer.Argument(..., help="Image files.", show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="Output file (a folder for --format pts); default: stdout."),
    fmt: Format = typer.Option(Format.json, "--format", "-f", help="json, jsonl, csv or pts.", case_sensitive=False),
    overlay: Path = typer.Option(None, "--overlay", help="Draw the faces: an image file (one input) or a folder."),
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
) -> int:
    """Find facial landmarks on images. Coordinates are original pixels, 0-based pixel centres."""
    from fflm import runner
    from fflm.cli.common import boxes_source, make_landmarker
    from fflm.outputs import overlay_writer, write_results

    existing(images)
    for p in images:
        if p.is_dir():
            raise usage(f"{p} is a folder: use 'fflm batch {p}'")
    if fmt == Format.pts and out is None:
        raise usage("--format pts writes one file per face: give a folder with --out")
    if (fmt == Format.pts or overlay is not None) and len({p.stem for p in images}) < len(images):
        raise usage("two inputs share a file name, so their .pts/overlay files would collide: use 'fflm batch' on a folder")
    if overlay is not None and len(images) == 1 and overlay.suffix and not overlay.is_dir():
        if overlay.suffix.lower() not in OVERLAY_TYPES:
            raise usage(f"--overlay: cannot write a colour image as {overlay.suffix} (use {', '.join(OVERLAY_TYPES)})")
    given = boxes_source(boxes, detector)
    lm = make_landmarker(weights, device, detector, detector_model, tiles, max_faces, min_face_size, flip,
                         detector_threshold, precision=precision)
    results = []
    failed = 0
    draw = overlay_writer(overlay, lm.scheme, len(images) > 1)
    for r in runner.run(lm, runner.file_items(images), given, batch_size=8, workers=2, visit=draw):
        if r.error is not None:
            failed += 1
            message(f"fflm: error: {r.error}")
        else:
            results.append(r)
    if results:
        text = write_results(results, fmt.value, out, lm.scheme.num_points, single=len(images) == 1)
        if text is not None:
            typer.echo(text, nl=False)
    return 1 if failed else 0
