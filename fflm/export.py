"""The networks as ONNX files (opset 18, dynamic batch) and a manifest that says how to feed and read them.

`export_onnx(out_dir)` writes, from the served form of the networks (BatchNorm folded, the regional networks
stacked into one grouped network per stage, float32):

- `detector.onnx`: the built-in detector's map network, input (RGB - mean) / std [1, 3, H, W] with H and W
  multiples of 32, one [1, 5, H/s, W/s] map per stride; `detector-verifier.onnx`: its crop classifier, input
  RGB 0..255 crops [K, 3, 40, 40], output [K, 5] (face logit, box deltas);
- `global.onnx`: the global network, input the normalised proxy [B, 3, P, P], one heatmap [B, N, P/4, P/4] per stack;
- `regional-<stage>.onnx`: the stacked regional networks, input the R normalised crops side by side in the
  channels [K, 3·R, S, S], output per stack [K, R·W, S/4, S/4] (region r's maps in channels r·W…);
- `yunet.onnx`: a copy of the YuNet model, when one is given;
- `fflm-onnx.json`: the scheme, the sha256 of the weights and detector files they came from, and the constants
  of the steps around the networks (normalisation, sizes, soft-argmax temperatures and strides, region boxes).

Points come from each heatmap by a spatial softmax at the stored temperature and a soft-argmax (fflm.model.heads),
in the network input's pixels; fflm.backends.onnx runs the files with ONNX Runtime inside the usual pipeline.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from fflm.backends import require
from fflm.fileio import atomic_write

FORMAT = "fflm-onnx/1"
MANIFEST = "fflm-onnx.json"
OPSET = 18


class _Maps(nn.Module):
    """The detector's first stage on an already normalised input (what fflm.detect.run.prepare makes)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net.run_normalised(x)


def _export(module: nn.Module, example: torch.Tensor, path: Path, dynamic: dict[int, object]) -> list[str]:
    """`module` as ONNX at `path` (input `input`, outputs `output_<i>`); returns the output names."""
    n = len(list(module(example)))
    names = [f"output_{i}" for i in range(n)]
    quiet = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, (example,), dynamo=True, opset_version=OPSET, input_names=["input"],
                                        output_names=names, dynamic_shapes=(dynamic,), verbose=False, optimize=True)
        tmp = path.with_name(path.name + ".part")
        program.save(str(tmp))
        tmp.replace(path)
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)
    return names


def export_onnx(out_dir: str | Path, weights: str | Path | None = None, detector_model: str | Path | None = None,
                yunet: str | Path | None = None) -> Path:
    """Write the ONNX files and the manifest into `out_dir` (made if missing); returns the manifest's path."""
    require("onnxscript", "onnx", "ONNX export")
    require("onnx", "onnx", "ONNX export")
    from fflm.detect.builtin import BuiltinDetector
    from fflm.pipeline import Landmarker
    from fflm.weights import file_sha256, resolve

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    weights_path, detector_path = resolve(weights), resolve(detector_model, "detector")
    det = BuiltinDetector(detector_path)
    lm = Landmarker(weights_path, device="cpu", detector=det, precision="float32")
    model, cfg = lm.model, lm.model.config
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.inference_mode(False), torch.no_grad():
        p, s, r = cfg.proxy_size, cfg.crop_size, len(lm.scheme.regions)
        global_outputs = _export(model.global_net, torch.randn(2, 3, p, p), out / "global.onnx", {0: batch})
        regional = []
        for stage, net in enumerate(model.stacked_regions):
            name = f"regional-{stage}.onnx"
            outputs = _export(net, torch.randn(2, 3 * r, s, s), out / name, {0: batch})
            regional.append({"file": name, "outputs": outputs})
        h32, w32 = torch.export.Dim("height_32", min=1, max=256), torch.export.Dim("width_32", min=1, max=256)
        maps_outputs = _export(_Maps(det.model), torch.randn(1, 3, 192, 256), out / "detector.onnx",
                               {2: 32 * h32, 3: 32 * w32})
        detector = {"kind": "builtin", "file": "detector.onnx", "sha256": file_sha256(detector_path),
                    "source": detector_path.name, "outputs": maps_outputs, "strides": list(det.model.config.strides),
                    "mean": list(det.model.config.mean), "std": det.model.config.std, "proxy": det.proxy,
                    "threshold": det.threshold, "landmark_box": det.landmark_box}
        verifier = det.model.verifier
        if verifier is not None:
            vs = verifier.config.crop
            _export(verifier, torch.rand(2, 3, vs, vs) * 255, out / "detector-verifier.onnx", {0: batch})
            detector["verifier"] = {"file": "detector-verifier.onnx", **verifier.config.to_dict()}
    manifest = {
        "format": FORMAT,
        "opset": OPSET,
        "weights": {"source": weights_path.name, "sha256": file_sha256(weights_path)},
        "scheme": lm.scheme.to_dict(),
        "detector": detector,
        "global": {"file": "global.onnx", "outputs": global_outputs, "input": [None, 3, p, p],
                   "stride": model.global_net.stride, "temperature": _temperature(model.global_head)},
        "regional": {"stages": regional, "input": [None, 3 * r, s, s], "stride": model.regional_nets[0][0].stride,
                     "regions": [region.name for region in lm.scheme.regions],
                     "points": [len(region.indices) for region in lm.scheme.regions],
                     "temperature": [[_temperature(h) for h in heads] for heads in model.regional_heads]},
        "preprocess": {"mean": [round(float(v), 6) for v in model.mean.flatten()],
                       "std": [round(float(v), 6) for v in model.std.flatten()], "pixels": "RGB 0..255",
                       "proxy_size": p, "crop_size": s, "frame_scale": cfg.frame_scale,
                       "region_margin": cfg.region_margin, "region_min_side": cfg.region_min_side},
        "postprocess": {"points": "spatial softmax of heatmap / temperature over each map, then its expectation "
                        "(soft-argmax) with cell (i, j) at (j·stride + (stride - 1)/2, i·stride + (stride - 1)/2) "
                        "in the network input's pixels",
                        "scores": "probability mass within 1.5 cells of the point",
                        "mirror_offset": cfg.mirror_offset, "mirror_offset_unit": cfg.mirror_offset_unit},
    }
    if yunet is not None:
        yunet = Path(yunet)
        shutil.copyfile(yunet, out / "yunet.onnx")
        manifest["yunet"] = {"file": "yunet.onnx", "source": yunet.name, "sha256": file_sha256(yunet)}
    path = out / MANIFEST
    atomic_write(path, (json.dumps(manifest, indent=1) + "\n").encode())
    return path


def _temperature(head: nn.Module) -> float:
    return round(float(torch.exp(-head.log_beta)), 8)
