"""The mirror offset of a weights file (`ModelConfig.mirror_offset`), measured on training annotations.

    python -m fflm.train.calibrate WEIGHTS --data 300w/train --out CALIBRATED_WEIGHTS

Mirrored training samples teach the network the mirror-symmetric position of each point; annotations that
sit consistently right (or left) of it keep that offset as an error of every prediction. It is measured as
the mean horizontal residual (truth - prediction) of the served pipeline (mirrored passes, shape prior,
boxes from the landmarks) on the given faces, each face's residual divided by the side of its face frame
(`frame_scale` × the larger side of the predicted points' box), with the file's own offset set aside, and
stored in the copy as that fraction (`mirror_offset_unit` "frame"): an offset that scales with the face.
Measure it on training faces, never on the faces it will be scored on.

`--from-px` instead converts a file's offset in pixels (written before the offset had a unit) into the same
fraction without running the model: the pixels divided by the mean frame side of the annotated faces, which
keeps the mean pixel offset on those faces.
"""

from __future__ import annotations

import json
from pathlib import Path

from fflm.train import weights_tool_parser


def mirror_offset(weights: str | Path, data: str | Path, device: str = "cpu") -> tuple[float, int]:
    """(offset as a fraction of the face frame's side, faces used): the mean horizontal residual of `weights`
    on the annotations in `data`, face by face over its frame side."""
    import numpy as np

    from fflm.evaluate import evaluate
    from fflm.pipeline import Landmarker
    from fflm.annotations import read_annotations

    lm = Landmarker(weights, device=device, detector="none", precision="float32")  # the same figure on any CPU
    lm.model.config.mirror_offset = 0.0
    samples = read_annotations(data, lm.scheme.num_points)
    report = evaluate(lm, samples)
    found = ~np.isnan(report.points).any(axis=(1, 2))
    if not found.any():
        raise ValueError(f"{data}: no face could be measured")
    pred = report.points[found]
    truth = np.stack([s.points for s in samples])[found]
    side = lm.model.config.frame_scale * (pred.max(axis=1) - pred.min(axis=1)).max(axis=1)
    return float(np.mean((truth - pred)[..., 0].mean(axis=1) / side)), int(found.sum())


def mean_frame_side(data: str | Path, frame_scale: float, num_points: int) -> tuple[float, int]:
    """(mean face frame side in px, faces) of the annotated faces in `data`."""
    import numpy as np

    from fflm.annotations import read_annotations

    pts = np.stack([s.points for s in read_annotations(data, num_points)])
    return float(np.mean(frame_scale * (pts.max(axis=1) - pts.min(axis=1)).max(axis=1))), len(pts)


def calibrate(weights: str | Path, data: str | Path, out: str | Path, from_px: bool = False) -> str:
    """Copy `weights` to `out` with the mirror offset measured on `data` (or, `from_px`, its pixel offset
    converted with `data`'s mean frame side); a note on what was stored."""
    from fflm.weights import load_model, save_model

    model, metadata = load_model(weights)
    config = model.config
    if from_px:
        if config.mirror_offset_unit != "px":
            raise ValueError(f"{weights}: its mirror offset is already a fraction of the face frame")
        side, n = mean_frame_side(data, config.frame_scale, model.scheme.num_points)
        offset = config.mirror_offset / side
        note = (f"mirror offset {offset:+.6f} of the face frame's side: the stored {config.mirror_offset:+.4f} px over "
                f"the mean frame side {side:.1f} px of {n} faces of {data}")
    else:
        offset, n = mirror_offset(weights, data)
        note = f"mirror offset {offset:+.6f} of the face frame's side, measured on {n} faces of {data}"
    config.mirror_offset, config.mirror_offset_unit = round(offset, 7), "frame"
    save_model(out, model, {**metadata, "mirror_offset": {"data": str(data), "faces": n, "note": note}})
    return note


def main(argv: list[str] | None = None) -> None:
    ap = weights_tool_parser(__doc__)
    ap.add_argument("--from-px", action="store_true", help="convert a pixel offset instead of measuring one")
    a = ap.parse_args(argv)
    print(json.dumps({"out": a.out, "note": calibrate(a.weights, a.data, a.out, a.from_px)}))


if __name__ == "__main__":
    main()
