"""Shared fixtures: tiny models and weights built on the fly, tiny images, and the shared data folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fflm import inference
from fflm.model import HourglassConfig, LandmarkNet, ModelConfig
from fflm.pts import format_pts
from fflm.weights import save_model

torch.set_num_threads(1)

real_native_bfloat16 = inference.native_bfloat16


@pytest.fixture(autouse=True)
def float32_by_default(monkeypatch):
    """In-process tests resolve `precision="auto"` to float32 on any CPU, so comparisons with float32 references
    hold on every machine; the bfloat16 path is tested where a test asks for it by name."""
    monkeypatch.setattr(inference, "native_bfloat16", lambda device: False)


SHARED = Path(os.environ.get("FFLM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
needs_shared = pytest.mark.skipif(not (SHARED / "data").is_dir(), reason=f"shared data not found at {SHARED}")


def tiny_config(**overrides) -> ModelConfig:
    """A model small enough to build and run in milliseconds (68 points, 64 px proxy, 32 px crops)."""
    kw = dict(
        proxy_size=64,
        crop_size=32,
        global_net=HourglassConfig(width=8, depth=2, stem_stride=4),
        regional_net=HourglassConfig(width=8, depth=1, stem_stride=4),
    )
    kw.update(overrides)
    return ModelConfig(**kw)


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """The tiny model saved once for the whole run (tests only read it; the machine is slow: keep setup cheap)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_model(path, LandmarkNet(tiny_config()).eval(), {"note": "tiny test model"})
    return path


def randomise_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm layer non-trivial statistics and affine terms, so that folding them is tested."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return module


def shape68() -> np.ndarray:
    """A plausible 68-point iBUG face in unit coordinates (centre 0, about 1 wide). Outer eye corners: 36 is
    the leftmost point of the first eye, 45 the rightmost of the second, 0.64 apart."""
    t = np.linspace(np.pi, 0, 17)
    jaw = np.stack([0.45 * np.cos(t), 0.1 + 0.45 * np.sin(t)], 1)
    brows = [np.stack([np.linspace(a, a + 0.3, 5), np.full(5, -0.28)], 1) for a in (-0.38, 0.08)]
    nose = [np.stack([np.zeros(4), np.linspace(-0.12, 0.1, 4)], 1), np.stack([np.linspace(-0.08, 0.08, 5), np.full(5, 0.15)], 1)]
    a = np.linspace(np.pi, -np.pi, 7)[:-1]
    eye = np.stack([0.1 * np.cos(a), 0.04 * np.sin(a)], 1)
    b = np.linspace(np.pi, -np.pi, 13)[:-1]
    c = np.linspace(np.pi, -np.pi, 9)[:-1]
    mouth = [np.stack([0.2 * np.cos(b), 0.32 + 0.08 * np.sin(b)], 1), np.stack([0.12 * np.cos(c), 0.32 + 0.03 * np.sin(c)], 1)]
    return np.concatenate([jaw, *brows, *nose, eye + [-0.22, -0.12], eye + [0.22, -0.12], *mouth])


def faces(folder: Path, n: int, distinct: int | None = None, size: int = 72, seed: int = 0) -> Path:
    """A 300-W style folder of n faces (image + 1-based .pts); with `distinct`, face k repeats face k % distinct."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        rng = np.random.default_rng((seed, k % (distinct or n)))
        img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        pts = size / 2 + shape68() * size * 0.55 + rng.normal(0, 0.8, (68, 2))
        for x, y in pts:
            cv2.circle(img, (int(round(x)), int(round(y))), 1, (255, 255, 255), -1)
        assert cv2.imwrite(str(folder / f"f{k}.png"), img)
        (folder / f"f{k}.pts").write_text(format_pts(pts))
    return folder


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """fflm in-process: (exit code, stdout, stderr); never a traceback."""
    from fflm.cli import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out and "Traceback" not in err
    return rc, out, err


def one_error(err: str) -> str:
    """The single stderr line of a failed command."""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fflm") and "error" in lines[0], err
    return lines[0]


@pytest.fixture
def tiny_model() -> LandmarkNet:
    torch.manual_seed(0)
    return LandmarkNet(tiny_config()).eval()


@pytest.fixture
def tiny_weights(tmp_path: Path, tiny_model: LandmarkNet) -> Path:
    path = tmp_path / "tiny.safetensors"
    save_model(path, tiny_model, {"note": "tiny test model"})
    return path


@pytest.fixture
def face_image() -> np.ndarray:
    """A 200×160 RGB uint8 image with some structure (random but fixed)."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)
    return img


def scene_folder(folder: Path, train: int = 12, val: int = 2) -> Path:
    """A made-up `shared/data/scenes` folder: photos with one flat disc "face" each (human box and five
    keypoints in labels.json), `train` of them in the training split and `val` in the held-out one."""
    import json

    from fflm.train.detector_data import is_validation

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"wider_{i}.jpg" for i in range(40)]
    labels = {}
    for name in [n for n in names if not is_validation(n)][:train] + [n for n in names if is_validation(n)][:val]:
        img = np.full((96, 128, 3), rng.integers(0, 255, 3), np.uint8)
        x, y = int(rng.integers(0, 60)), int(rng.integers(0, 30))
        cv2.circle(img, (x + 24, y + 28), 22, (200, 160, 140), -1)
        cv2.imwrite(str(folder / name), img)
        kps = [[x + 16, y + 22], [x + 32, y + 22], [x + 24, y + 30], [x + 18, y + 38], [x + 30, y + 38]]
        labels[name] = [{"box": [x + 2, y + 4, x + 46, y + 52], "kps": kps, "source": "human", "score": 0.9}]
    (folder / "labels.json").write_text(json.dumps(labels))
    (folder / "ignore.json").write_text("{}")
    return folder


@pytest.fixture
def tiny_video(tmp_path) -> Path:
    """5 MJPG frames of 64×48, frame k a flat grey of 40·k + 20."""
    path = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert vw.isOpened()
    for k in range(5):
        vw.write(np.full((48, 64, 3), 40 * k + 20, np.uint8))
    vw.release()
    return path


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory) -> Path:
    """The shipped weights and detector exported once through the CLI, for both exported backends."""
    from fflm.cli import main

    for module in ("onnxscript", "onnx"):
        pytest.importorskip(module)
    out = tmp_path_factory.mktemp("onnx") / "model-onnx"
    assert main(["export", "--format", "onnx", str(out)]) == 0
    return out


def detect_landmarks(capsys, *args) -> np.ndarray:
    """`fflm detect` with `args` on a photo with one face: that face's landmarks."""
    rc, out, _ = run_cli(capsys, "detect", *args)
    assert rc == 0
    [face] = json.loads(out)["faces"]
    return np.array(face["landmarks"])
