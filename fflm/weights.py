"""Weights files, landmark models and detectors alike: safetensors with the network configuration and training
metadata as JSON in the header, a `format` tag telling the two kinds apart.

The shipped files are package data (`fflm/assets/`), read through importlib.resources, and have short names:
`shipped("300w-68")` is the default landmark model's path, and `Landmarker("300w-68-stacks2")` loads the heavier
one. Wherever a weights file is asked for, a shipped name or a path will do (`resolve`).
"""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save as save_tensors

from fflm.errors import WeightsError
from fflm.fileio import atomic_write
from fflm.model import LandmarkNet, ModelConfig

FORMAT = "fflm-landmarks/1"
DETECTOR_FORMAT = "fflm-detector/1"

#: the files fflm ships, by short name
SHIPPED = {
    "300w-68": "fflm-300w-68.safetensors",
    "300w-68-stacks2": "fflm-300w-68-stacks2.safetensors",
    "300w-68-fast": "fflm-300w-68-fast.safetensors",
    "detector": "fflm-detector.safetensors",
}
DEFAULT = "300w-68"


def asset(name: str) -> Path:
    """A file of `fflm/assets/` (shipped weights, model cards, the sample portrait)."""
    return Path(str(files("fflm") / "assets" / name))


def shipped(name: str) -> Path:
    """The path of the shipped file called `name` (a key of SHIPPED)."""
    if name not in SHIPPED:
        raise WeightsError(f"no shipped weights called {name!r} (one of {', '.join(SHIPPED)})")
    return asset(SHIPPED[name])


def resolve(weights: str | Path | None, default: str = DEFAULT) -> Path:
    """The file meant by `weights`: None is the shipped `default`, a shipped name its file (unless a file of that
    name exists here), anything else a path."""
    if weights is None:
        return shipped(default)
    if str(weights) in SHIPPED and not Path(weights).exists():
        return shipped(str(weights))
    return Path(weights)


DEFAULT_WEIGHTS = shipped(DEFAULT)
DEFAULT_DETECTOR = shipped("detector")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(path: str | Path, model: torch.nn.Module, fmt: str, metadata: dict | None = None,
         floats_only: bool = False) -> None:
    """Write `model`'s tensors (`floats_only`: its floating-point ones, as float32), its `config.to_json()` and
    the metadata (JSON) under the format tag `fmt`, atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
             if v.dtype.is_floating_point or not floats_only}
    if floats_only:
        state = {k: v.float() for k, v in state.items()}
    header = {"format": fmt, "config": model.config.to_json(), "metadata": json.dumps(metadata or {}, sort_keys=True)}
    atomic_write(Path(path), save_tensors(state, metadata=header))


def raw_header(path: str | Path, error: type[WeightsError] = WeightsError, what: str = "weights file") -> dict:
    """The string metadata of any safetensors file (its `format` tells landmark weights from a detector).
    `error` and `what` name the file in the error when it is missing or unreadable."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise error(f"{path}: not a readable safetensors file ({e})") from None


def header(path: str | Path, fmt: str, kind: str, error: type[WeightsError] = WeightsError) -> tuple[str, dict]:
    """The configuration (JSON text) and metadata of a file that must carry the format tag `fmt` (`kind` names
    it in the error: "landmark weights", "detector")."""
    h = raw_header(path, error)
    if h.get("format") != fmt:
        raise error(f"{path}: not an fflm {kind} file (format {h.get('format')!r})")
    try:
        return h["config"], json.loads(h.get("metadata", "{}"))
    except (KeyError, ValueError) as e:
        raise error(f"{path}: bad configuration in header ({e})") from None


def read_header(path: str | Path) -> tuple[ModelConfig, dict]:
    """Configuration and metadata of a landmark weights file, without loading its tensors."""
    config, metadata = header(path, FORMAT, "landmark weights")
    try:
        return ModelConfig.from_json(config), metadata
    except (KeyError, ValueError, TypeError) as e:
        raise WeightsError(f"{path}: bad configuration in header ({e})") from None


def save_model(path: str | Path, model: LandmarkNet, metadata: dict | None = None) -> None:
    """Write a landmark model's tensors, configuration and metadata (JSON) atomically."""
    save(path, model, FORMAT, metadata)


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> tuple[LandmarkNet, dict]:
    """Build the model its header describes and load its tensors (strictly: every tensor must match). `path`: a
    file or a shipped name (None: the default)."""
    path = resolve(path)
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
    path = resolve(path)
    read_header(path)
    state = load_file(str(path), device="cpu")
    own = model.state_dict()
    kept = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    model.load_state_dict({k: state[k] for k in kept}, strict=False)
    return kept, sorted(set(own) - set(kept))


def file_summary(path: str | Path) -> dict:
    """The `file` section of `fflm info`: path, size and checksum."""
    path = Path(path)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def describe(path: str | Path | None = None) -> dict:
    """A summary of a weights file of either kind for `fflm info`: file, network, scheme or decoding defaults,
    and training metadata. `path`: a file or a shipped name (None: the default landmark model)."""
    path = resolve(path)
    if raw_header(path).get("format") == DETECTOR_FORMAT:
        from fflm.detect.weights import describe_detector

        return describe_detector(path)
    config, metadata = read_header(path)
    scheme = config.landmark_scheme
    params = sum(p.numel() for p in LandmarkNet(config).parameters())  # learnable only, not BatchNorm statistics

    def net(c) -> str:
        return (f"width {c.width}, depth {c.depth}, stacks {c.stacks}, stem stride {c.stem_stride}"
                + (", light" if c.light else ""))

    return {
        "file": file_summary(path),
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
