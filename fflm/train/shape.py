"""The shape model of a weights file, fitted from training annotations (see fflm.shape).

`fflm train` fits it at the start of a run. For weights trained without one:

    python -m fflm.train.shape WEIGHTS --data 300w/train --out WEIGHTS_WITH_SHAPE [--components 6]
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from fflm.model import LandmarkNet, ModelConfig
from fflm.shape import ShapeModel
from fflm.train import weights_tool_parser


def fit_shape(model: LandmarkNet, samples: list) -> str:
    """Fit and store the model's shape model from annotated samples; a note on what was done."""
    k = model.config.shape_prior.components
    if not k:
        return "shape model: none configured"
    if len(samples) <= k:
        return f"shape model: {len(samples)} faces are too few for {k} modes; none stored"
    model.set_shape_model(ShapeModel.fit(np.stack([s.points for s in samples]), k))
    return f"shape model: {k} modes fitted on {len(samples)} faces"


def with_shape(weights: str | Path, data: str | Path, out: str | Path, components: int = 6) -> str:
    """Copy `weights` to `out` with a `components`-mode shape model fitted on the annotations in `data`."""
    from fflm.annotations import read_annotations
    from fflm.weights import WeightsError, read_header, save_model

    config, metadata = read_header(weights)
    config = ModelConfig(**{**asdict(config), "shape_prior": asdict(replace(config.shape_prior, components=components))})
    model = LandmarkNet(config)
    state = load_file(str(weights), device="cpu")
    for name in ("shape_mean", "shape_components", "shape_variances"):
        state.pop(name, None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not m.startswith("shape_") for m in missing):
        raise WeightsError(f"{weights}: tensors do not match the configuration")
    note = fit_shape(model, read_annotations(data, config.landmark_scheme.num_points))
    save_model(out, model.eval(), {**metadata, "shape_model": {"data": str(data), "components": components, "note": note}})
    return note


def main(argv: list[str] | None = None) -> None:
    ap = weights_tool_parser(__doc__)
    ap.add_argument("--components", type=int, default=6)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps({"out": a.out, "note": with_shape(a.weights, a.data, a.out, a.components)}))


if __name__ == "__main__":
    main()
