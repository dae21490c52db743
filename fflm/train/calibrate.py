"""The mirror offset of a weights file (`ModelConfig.mirror_offset`), measured on training annotations.

    python -m fflm.train.calibrate WEIGHTS --data 300w/train --out CALIBRATED_WEIGHTS

Mirrored training samples teach the network the mirror-symmetric position of each point; annotations that
sit consistently right (or left) of it keep that offset as an error of every prediction. It is measured as
the mean horizontal residual (truth - prediction) of the served pipeline (mirrored passes, shape prior,
boxes from the landmarks) on the given faces, with the file's own offset set aside, and stored in the copy.
Measure it on training faces, never on the faces it will be scored on.
"""

from __future__ import annotations

import json
from pathlib import Path

from fflm.train import weights_tool_parser


def mirror_offset(weights: str | Path, data: str | Path, device: str = "cpu") -> tuple[float, int]:
    """(offset in px, faces used): the mean horizontal residual of `weights` on the annotations in `data`."""
    from fflm.evaluate import evaluate
    from fflm.pipeline import Landmarker
    from fflm.train.data import read_annotations

    lm = Landmarker(weights, device=device, detector="none", precision="float32")  # the same figure on any CPU
    lm.model.config.mirror_offset = 0.0
    samples = read_annotations(data, lm.scheme.num_points)
    report = evaluate(lm, samples)
    if report.residual is None:
        raise ValueError(f"{data}: no face could be measured")
    return float(report.residual[0]), len(samples)


def calibrate(weights: str | Path, data: str | Path, out: str | Path) -> str:
    """Copy `weights` to `out` with the mirror offset measured on `data`; a note on what was stored."""
    from fflm.weights import load_model, save_model

    offset, n = mirror_offset(weights, data)
    model, metadata = load_model(weights)
    model.config.mirror_offset = round(offset, 4)
    note = f"mirror offset {offset:+.3f} px, measured on {n} faces of {data}"
    save_model(out, model, {**metadata, "mirror_offset": {"data": str(data), "faces": n, "note": note}})
    return note


def main(argv: list[str] | None = None) -> None:
    a = weights_tool_parser(__doc__).parse_args(argv)
    print(json.dumps({"out": a.out, "note": calibrate(a.weights, a.data, a.out)}))


if __name__ == "__main__":
    main()
