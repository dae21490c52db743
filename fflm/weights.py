"""Weights files: safetensors with the model configuration and training metadata in the header."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from fflm.fileio import atomic_write
from fflm.model import LandmarkNet, ModelConfig

FORMAT = "fflm-landmarks/1"
DEFAULT_NAME = "fflm-300w-68.safetensors"


def _default_weights() -> Path:
    """The shipped model: `weights/` of a source checkout (editable install), else the copy a wheel
    installs under `<prefix>/share/fflm/weights`."""
    import sys

    here = Path(__file__).resolve().parent.parent / "weights" / DEFAULT_NAME
    installed = Path(sys.prefix) / "share" / "fflm" / "weights" / DEFAULT_NAME
    return here if here.exists() or not installed.exists() else installed


DEFAULT_WEIGHTS = _default_weights()


class WeightsError(Exception):
    """A missing, corrupt or mismatched weights file."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(path: str | Path, model: LandmarkNet, metadata: dict | None = None) -> None:
    """Write the model's tensors, configuration and metadata (JSON) atomically."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "config": model.config.to_json(), "metadata": json.dumps(metadata or {}, sort_keys=True)}
    atomic_write(path, save(state, metadata=header))


def raw_header(path: str | Path) -> dict:
    """The string metadata of any safetensors file (its `format` tells landmark weights from a detector)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None


def read_header(path: str | Path) -> tuple[ModelConfig, dict]:
    """Configuration and metadata of a weights file, without loading its tensors."""
    path = Path(path)
    header = raw_header(path)
    if header.get("format") != FORMAT:
        raise WeightsError(f"{path}: not an fflm landmark weights file (format {header.get('format')!r})")
    try:
        return ModelConfig.from_json(header["config"]), json.loads(header.get("metadata", "{}"))
    except (KeyError, ValueError) as e:
        raise WeightsError(f"{path}: bad configuration in header ({e})") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[LandmarkNet, dict]:
    """Build the model its header describes and load its tensors (strictly: every tensor must match)."""
    config, metadata = read_header(path)
    model = LandmarkNet(config)
    try:
        state = load_file(str(path), device="cpu")
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise WeightsError(f"{path}: tensors do not match the configuration ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), metadata


def init_from(model: LandmarkNet, path: str | Path) -> tuple[list[str], list[str]]:
    """Copy every tensor of `path` whose name and shape match into `model` (fine-tuning with --init).

    Returns (kept, reinitialised) tensor names; layers whose shape changed keep their fresh init.
    """
    read_header(path)
    state = load_file(str(path), device="cpu")
    own = model.state_dict()
    kept = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    model.load_state_dict({k: state[k] for k in kept}, strict=False)
    return kept, sorted(set(own) - set(kept))


def describe(path: str | Path) -> dict:
    """A summary of a weights file for `fflm info`: file, model, scheme and training metadata."""
    path = Path(path)
    config, metadata = read_header(path)
    scheme = config.landmark_scheme
    params = sum(p.numel() for p in LandmarkNet(config).parameters())  # learnable only, not BatchNorm statistics

    def net(c) -> str:
        return (f"width {c.width}, depth {c.depth}, stacks {c.stacks}, stem stride {c.stem_stride}"
                + (", light" if c.light else ""))

    return {
        "file": {"path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)},
        "model": {
            "variant": config.variant,
            "parameters": params,
            "proxy_size": config.proxy_size,
            "crop_size": config.crop_size,
            "global_net": net(config.global_net),
            "regional_net": net(config.regional_net),
            "regional_stages": config.regional_stages,
            "frame_scale": config.frame_scale,
            "mirror_offset": (f"{config.mirror_offset:+.3f} px (x, added to the points)" if config.mirror_offset_unit == "px"
                              else f"{config.mirror_offset:+.6f} of the face frame's side (x, added to the points)"),
            "shape_model": (f"{config.shape_prior.components} modes (unrefined points weight {config.shape_prior.weight},"
                            f" moved {config.shape_prior.blend} of the way)" if config.shape_prior.components else "none"),
        },
        "scheme": {
            "name": scheme.name,
            "points": scheme.num_points,
            "regions": ", ".join(f"{r.name} ({len(r.indices)})" for r in scheme.regions),
            "refined_points": len(scheme.refined_indices),
            "norm_points": list(scheme.norm_points),
        },
        "training": metadata,
    }
