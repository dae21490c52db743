"""`fflm eval`: measure a model on annotated faces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from fflm.cli.app import app, err, out_console, usage
from fflm.cli.common import LandmarkerOptions, landmarker_options

EXAMPLES = """
Examples:

  fflm eval 300w/val

  fflm eval 300w/val --boxes detector --plot ced.png

  fflm eval 300w/val --boxes detector --detector builtin

  fflm eval my_faces.csv --weights runs/x/best.safetensors --json > report.json

  fflm eval yaw00_30/ yaw30_60/ yaw60_90/      by yaw range, box-size NME beside

  fflm eval yaw60_90/,labels=../merlrav,only=heldout.txt
      2D labels, self-occluded points left out
"""


def _json_safe(v):
    """NaN (an aggregate over no found face) as null: NaN is not JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


@app.command("eval", epilog=EXAMPLES)
@landmarker_options("weights", "device", "precision", "flip", "fast", "shape_prior", "detector", "detector_model",
                    "detector_threshold", "backend", "onnx_dir", "threads")
def evaluate(
    data: list[str] = typer.Argument(..., metavar="DATA...", show_default=False,
                                     help="Annotations: a 300-W style folder (with optional .vis files), a .csv "
                                     "(fflm's own layout too) or a .json file; several are reported each on its own "
                                     "row. Settings as in fflm train --data: PATH,labels=DIR,exclude=FILE,only=FILE."),
    boxes: str = typer.Option("landmarks", "--boxes", metavar="SOURCE", help="landmarks (truth's tight box), "
                              "detector (the --detector's faces), or a boxes JSON file."),
    as_json: bool = typer.Option(False, "--json", help="Print the report (with per-image errors) as JSON."),
    plot: Path = typer.Option(None, "--plot", metavar="FILE", help="Write the cumulative error curve as PNG."),
    *,
    opts: LandmarkerOptions,
) -> int:
    """Measure a model on annotated faces: NME, failure rate and AUC, per region, stage and face size.

    NME is normalised by the outer-eye-corner distance (inter-ocular), by the truth box diagonal and by the
    truth box size √(w·h); FR and AUC at 0.08 and 0.10; the refined points are also scored with the global
    stage's estimate. Points a .vis file marks self-occluded are left out.
    """
    from rich.progress import Progress

    from fflm.evaluate import evaluate as run_eval, plot_ced
    from fflm.sources import Source, read_source

    try:
        sources = [Source.parse(d) for d in data]
    except ValueError as e:
        raise usage(str(e)) from None
    for src in sources:
        if not Path(src.path).exists():
            raise usage(f"no such file or directory: {src.path}")
    box_source: str | dict = boxes
    if boxes not in ("landmarks", "detector"):
        from fflm.cli.common import boxes_source

        box_source = boxes_source(Path(boxes), None)
    if boxes != "detector" and (opts.detector != "yunet" or opts.detector_model or opts.detector_threshold is not None):
        raise usage("--detector, --detector-model and --detector-threshold are for --boxes detector")
    if boxes == "detector" and opts.detector == "none":
        raise usage("--boxes detector needs a detector: --detector builtin or yunet")
    lm = opts.landmarker(with_detector=boxes == "detector")
    per_source = [read_source(src, lm.scheme.num_points, []) for src in sources]
    samples = [s for part in per_source for s in part]
    names = [src.path for src, part in zip(sources, per_source) for _ in part]
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("evaluating", total=len(samples))
        report = run_eval(lm, samples, box_source, progress=lambda done, n: bar.update(task, completed=done),
                          sources=names)
    d = report.to_dict(per_image=as_json)
    d["weights"] = str(lm.weights_path)
    d["boxes"] = boxes
    if plot is not None:
        plot_ced(plot, {"fflm": report.nme_io})
    if as_json:
        typer.echo(json.dumps(_json_safe(d), indent=1))
        return 0
    from rich.table import Table

    t = Table(title=f"fflm eval: {' '.join(data)} ({d['found']}/{d['faces']} faces, boxes: {boxes})",
              title_justify="left")
    for c in ("metric", "mean %", "median %", "FR@0.08 %", "FR@0.10 %", "AUC@0.08 %", "AUC@0.10 %"):
        t.add_column(c, justify="right" if c != "metric" else "left")
    for name, key in (("NME inter-ocular", "inter_ocular"), ("NME box diagonal", "box_diagonal"),
                      ("NME box size", "box_size")):
        s = d[key]
        t.add_row(name, *(f"{s[k]:.3f}" for k in ("mean", "median", "fr_0.08", "fr_0.10", "auc_0.08", "auc_0.10")))
    g = Table(title="per region / stage / face size (inter-ocular NME, mean %)", title_justify="left")
    g.add_column("part")
    g.add_column("mean %", justify="right")
    for k, v in d["groups"].items():
        g.add_row(k, f"{v:.3f}")
    if "refined_points" in d:
        g.add_row("refined points, final", f"{d['refined_points']['final']:.3f}")
        g.add_row("refined points, global stage", f"{d['refined_points']['global_stage']:.3f}")
    for k, v in d["by_face_size"].items():
        g.add_row(f"face {k} px ({v['faces']})", f"{v['mean']:.3f}")
    out = out_console()
    out.print(t)
    out.print(g)
    if "by_source" in d:
        b = Table(title="by source (mean %)", title_justify="left")
        for c in ("source", "faces", "found", "NME inter-ocular", "NME box size"):
            b.add_column(c, justify="left" if c == "source" else "right")
        for name, v in d["by_source"].items():
            b.add_row(name, str(v["faces"]), str(v["found"]), f"{v['inter_ocular']:.3f}", f"{v['box_size']:.3f}")
        out.print(b)
    return 0
