"""Presets: `Landmarker(preset=...)` and `--fast` choose the shipped weights and the mirrored passes together."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fflm.errors import UsageError
from fflm.pipeline import Landmarker
from fflm.presets import PRESETS
from fflm.weights import SHIPPED, asset
from conftest import run_cli


def test_every_preset_names_a_shipped_file():
    assert {p.weights for p in PRESETS.values()} <= set(SHIPPED)
    assert PRESETS["default"].flip and not PRESETS["fast"].flip


def test_fast_preset_loads_the_light_file_without_mirrored_passes():
    lm = Landmarker(device="cpu", detector="none", preset="fast")
    assert lm.weights_path.name == "fflm-300w-68-fast.safetensors" and lm.flip is False
    assert (lm.model.config.proxy_size, lm.model.config.crop_size) == (192, 96)
    default = Landmarker(device="cpu", detector="none")
    assert default.weights_path.name == "fflm-300w-68.safetensors" and default.flip is True


def test_arguments_given_win_over_the_preset(weights):
    assert Landmarker(device="cpu", detector="none", preset="fast", flip=True).flip is True
    lm = Landmarker(weights, device="cpu", detector="none", preset="fast")
    assert lm.weights_path == weights and lm.flip is False


def test_an_unknown_preset_is_a_usage_error_naming_the_known_ones():
    with pytest.raises(UsageError, match="'default', 'fast'|default, fast"):
        Landmarker(device="cpu", preset="fastest")


def test_fast_on_the_command_line_finds_the_sample_face_near_the_default_points(capsys, monkeypatch):
    """`fflm detect --fast` on the shipped portrait: the fast file, no mirrored pass, one face whose points lie within
    a few pixels of the default's (the face is ~180 px wide: a few pixels is about one point of NME)."""
    made = []
    init = Landmarker.__init__
    monkeypatch.setattr(Landmarker, "__init__", lambda self, *a, **k: init(self, *a, **k) or made.append(self))
    sample = str(asset("astronaut.png"))
    rc, fast, err = run_cli(capsys, "detect", sample, "--fast")
    assert rc == 0, err
    rc, slow, err = run_cli(capsys, "detect", sample)
    assert rc == 0, err
    assert [(m.weights_path.name, m.flip) for m in made] == [("fflm-300w-68-fast.safetensors", False),
                                                             ("fflm-300w-68.safetensors", True)]
    [a], [b] = (json.loads(o)["faces"] for o in (fast, slow))
    err_px = np.linalg.norm(np.asarray(a["landmarks"]) - np.asarray(b["landmarks"]), axis=1)
    assert err_px.mean() < 3.0
    rc, _, _ = run_cli(capsys, "detect", sample, "--fast", "--flip")
    assert rc == 0 and made[-1].flip is True
