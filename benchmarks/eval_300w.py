"""The shipped landmark files on 300-W val, each setting `fflm eval` offers: the model card's evaluation table.

    python benchmarks/eval_300w.py [--val ../shared/data/300w/val] [--threads 2] [--record DIR]

Runs `fflm eval VAL --precision float32 --json` with the default settings, `--no-flip` and `--no-flip
--no-shape-prior` on `fflm-300w-68`, and the default settings on `fflm-300w-68-stacks2` (554 faces, framed from the
annotated landmarks' box), then `fflm-300w-68` on the faces of each shipped detector (`--boxes detector`), in one
process; inter-ocular NME in %. `--record DIR` writes the figures as
`DIR/<date>-<machine>-eval-300w-val.json` (fflm.cli.bench.record) for benchmarks/tables.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

from fflm.cli import main as fflm_main
from fflm.cli.bench import record

HERE = Path(__file__).resolve().parent
#: (setting, weights, boxes, extra options): boxes "landmarks" frames each face from its annotated landmarks' box,
#: a detector's name from that detector's faces (`--boxes detector`)
SETTINGS = [("default (mirrored passes averaged, shape model, mirror offset)", "300w-68", "landmarks", []),
            ("`--no-flip`", "300w-68", "landmarks", ["--no-flip"]),
            ("`--no-flip --no-shape-prior`", "300w-68", "landmarks", ["--no-flip", "--no-shape-prior"]),
            ("default", "300w-68-stacks2", "landmarks", []),
            ("default", "300w-68", "yunet", ["--boxes", "detector", "--detector", "yunet"]),
            ("default", "300w-68", "builtin", ["--boxes", "detector", "--detector", "builtin"])]


def evaluate(val: str, weights: str, extra: list[str], threads: int) -> dict:
    """`fflm eval --json`'s report for one setting."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = fflm_main(["eval", val, "--weights", weights, "--precision", "float32", "--threads", str(threads),
                        "--json", *extra])
    if rc:
        raise SystemExit(f"fflm eval {weights} {' '.join(extra)} failed ({rc})")
    return json.loads(out.getvalue())


def row(setting: str, weights: str, boxes: str, report: dict) -> dict:
    """One setting's figures as the results file holds them (benchmarks/tables.py reads these keys)."""
    io_ = report["inter_ocular"]
    return {"setting": setting, "weights": f"fflm-{weights}", "boxes": boxes, "found": report["found"],
            "faces": report["faces"], "mean": round(io_["mean"], 3),
            "median": round(io_["median"], 2), "fr_008": round(io_["fr_0.08"], 2), "auc_008": round(io_["auc_0.08"], 1),
            "fr_010": round(io_["fr_0.10"], 2), "auc_010": round(io_["auc_0.10"], 1),
            "regions": {k: round(v, 2) for k, v in report["groups"].items()},
            "refined_points": {k: round(v, 3) for k, v in report["refined_points"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--val", default=str(HERE.parents[1] / "shared" / "data" / "300w" / "val"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--record", type=Path, metavar="DIR")
    a = ap.parse_args()
    rows = [row(s, w, boxes, evaluate(a.val, w, extra, a.threads)) for s, w, boxes, extra in SETTINGS]
    for r in rows:
        print(f"{r['weights']:<22} {r['boxes']:<10} {r['setting']:<66} {r['mean']:.3f} %")
    if a.record:
        a.record.mkdir(parents=True, exist_ok=True)
        command = f"python benchmarks/eval_300w.py --threads {a.threads}"
        print(f"recorded {record({'rows': rows}, a.record, command, kind='eval-300w-val')}")


if __name__ == "__main__":
    main()
