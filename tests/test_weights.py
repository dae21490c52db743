"""fflm.weights: safetensors files with the model configuration and metadata in the header."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from fflm.model import HourglassConfig, LandmarkNet, ModelConfig
from fflm.scheme import IBUG68, LandmarkScheme, Region
from fflm.weights import FORMAT, WeightsError, describe, init_from, load_model, read_header, save_model
from conftest import tiny_config


def x_input() -> torch.Tensor:
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255


def state(model: LandmarkNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def ten_point_scheme() -> LandmarkScheme:
    return LandmarkScheme("ten", 10, (Region("left", (0, 1, 2)), Region("right", (5, 6, 7, 8))), ((0, 5),), (0, 5))


# ---------------------------------------------------------------- round trip


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = LandmarkNet(tiny_config(regional_stages=2, frame_scale=1.4, learn_temperature=False, temperature=0.8))
    model.train()
    with torch.no_grad():
        model(x_input())  # move the BatchNorm running statistics away from their initial values
        model.global_head.log_beta.fill_(-0.3)
    model.eval()
    path = tmp_path / "m.safetensors"
    meta = {"epochs": 3, "dataset": "unit-test", "nme": [0.05, 0.04]}
    save_model(path, model, meta)
    assert not (tmp_path / "m.safetensors.tmp").exists()  # written atomically through a temporary name

    loaded, loaded_meta = load_model(path)
    assert loaded_meta == meta
    assert loaded.config == model.config
    assert not loaded.training
    a, b = state(model), state(loaded)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        out_a, out_b = model(x_input()), loaded(x_input())
    torch.testing.assert_close(out_b["final"], out_a["final"], rtol=0, atol=0)
    torch.testing.assert_close(out_b["scores"], out_a["scores"], rtol=0, atol=0)


def test_fixture_weights_load(tiny_weights, tiny_model):
    loaded, meta = load_model(tiny_weights)
    assert meta == {"note": "tiny test model"}
    with torch.no_grad():
        torch.testing.assert_close(loaded(x_input())["final"], tiny_model(x_input())["final"], rtol=0, atol=0)


def test_save_without_metadata(tmp_path, tiny_model):
    path = tmp_path / "plain.safetensors"
    save_model(path, tiny_model)
    assert load_model(path)[1] == {}


def test_save_overwrites(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_model(path, tiny_model, {"v": 1})
    save_model(path, tiny_model, {"v": 2})
    assert read_header(path)[1] == {"v": 2}


def test_read_header(tiny_weights, tiny_model):
    config, meta = read_header(tiny_weights)
    assert isinstance(config, ModelConfig) and config == tiny_model.config
    assert config.landmark_scheme == IBUG68
    assert meta == {"note": "tiny test model"}


def test_describe(tiny_weights, tiny_model):
    d = describe(tiny_weights)
    data = tiny_weights.read_bytes()
    assert d["file"] == {"path": str(tiny_weights), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    m = d["model"]
    assert m["variant"] == "regular"
    assert (m["proxy_size"], m["crop_size"], m["regional_stages"], m["frame_scale"]) == (64, 32, 1, 1.5)
    assert m["global_net"] == "width 8, depth 2, stacks 1, stem stride 4"
    assert m["regional_net"] == "width 8, depth 1, stacks 1, stem stride 4"
    # learnable parameters only: BatchNorm running statistics are not counted
    assert m["parameters"] == sum(p.numel() for p in tiny_model.parameters())
    assert d["scheme"] == {"name": "ibug68", "points": 68,
                           "regions": "right_eye (11), left_eye (11), nose (9), mouth (20)",
                           "refined_points": 51, "norm_points": [36, 45]}
    assert d["training"] == {"note": "tiny test model"}
    json.dumps(d)  # printable as JSON by `fflm info`


def test_describe_light(tmp_path):
    cfg = tiny_config(global_net=HourglassConfig(width=8, depth=2, stem_stride=4, light=True),
                      regional_net=HourglassConfig(width=8, depth=1, stem_stride=4, light=True))
    path = tmp_path / "light.safetensors"
    save_model(path, LandmarkNet(cfg))
    d = describe(path)
    assert d["model"]["variant"] == "light"
    assert d["model"]["global_net"].endswith(", light")


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    for f in (read_header, load_model, describe):
        with pytest.raises(WeightsError, match="not found"):
            f(tmp_path / "nope.safetensors")
    with pytest.raises(WeightsError, match="not found"):
        read_header(tmp_path)  # a directory is not a weights file


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, bytes(range(256)) * 40,
                                     b"\xff\xff\xff\xff\xff\xff\xff\x7f{}", b'\x02\x00\x00\x00\x00\x00\x00\x00{}'])
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "corrupt.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError):
        load_model(path)
    with pytest.raises(WeightsError):
        describe(path)


def test_truncated_file(tmp_path, tiny_weights):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(tiny_weights.read_bytes()[:-1000])
    with pytest.raises(WeightsError):
        load_model(path)


def test_foreign_safetensors_file(tmp_path):
    """A valid safetensors file written by someone else: no fflm header."""
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(WeightsError, match="not an fflm"):
        load_model(path)
    save_file({"w": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="not an fflm"):
        read_header(path)


@pytest.mark.parametrize("config", ["{not json", '{"proxy_size": 72}', '{"colour": "red"}', None])
def test_bad_config_in_header(tmp_path, tiny_model, config):
    path = tmp_path / "bad.safetensors"
    meta = {"format": FORMAT, "metadata": "{}"}
    if config is not None:
        meta["config"] = config
    save_file(state(tiny_model), str(path), metadata=meta)
    with pytest.raises(WeightsError, match="bad configuration"):
        load_model(path)


def test_tensors_not_matching_config(tmp_path, tiny_model):
    """The header promises width 16, the tensors are the width-8 tiny model's."""
    path = tmp_path / "mismatch.safetensors"
    other = tiny_config(global_net=HourglassConfig(width=16, depth=2, stem_stride=4))
    save_file(state(tiny_model), str(path), metadata={"format": FORMAT, "config": other.to_json(), "metadata": "{}"})
    with pytest.raises(WeightsError, match="do not match"):
        load_model(path)


def test_missing_tensor(tmp_path, tiny_model):
    path = tmp_path / "partial.safetensors"
    tensors = state(tiny_model)
    del tensors["global_net.heads.0.bias"]
    save_file(tensors, str(path), metadata={"format": FORMAT, "config": tiny_model.config.to_json(), "metadata": "{}"})
    with pytest.raises(WeightsError, match="do not match"):
        load_model(path)


def test_unexpected_extra_tensor(tmp_path, tiny_model):
    path = tmp_path / "extra.safetensors"
    tensors = state(tiny_model)
    tensors["stray"] = torch.zeros(2)
    save_file(tensors, str(path), metadata={"format": FORMAT, "config": tiny_model.config.to_json(), "metadata": "{}"})
    with pytest.raises(WeightsError, match="do not match"):
        load_model(path)


# ---------------------------------------------------------------- init_from


def test_init_from_other_scheme(tiny_weights, tiny_model):
    """68-point weights into a 10-point, 2-region model: only the point-count-dependent heads change
    shape (global head 68 → 10 outputs; region heads 11 → 3 and 11 → 4); regions 2 and 3 of the
    source have no counterpart."""
    torch.manual_seed(1)
    target = LandmarkNet(tiny_config(scheme=ten_point_scheme().to_dict()))
    fresh = state(target)
    kept, reinit = init_from(target, tiny_weights)
    assert reinit == sorted([
        "global_net.heads.0.weight", "global_net.heads.0.bias",
        "regional_nets.0.0.heads.0.weight", "regional_nets.0.0.heads.0.bias",
        "regional_nets.0.1.heads.0.weight", "regional_nets.0.1.heads.0.bias",
    ])
    own = target.state_dict()
    assert set(kept) == set(own) - set(reinit)
    assert not any(k.startswith(("regional_nets.0.2.", "regional_nets.0.3.")) for k in kept)
    source = tiny_model.state_dict()
    for k in kept:
        assert torch.equal(own[k], source[k]), k
    for k in reinit:
        assert torch.equal(own[k], fresh[k]), k
    # the copied weights differ from the fresh ones: the copy did happen
    assert not torch.equal(fresh["global_net.stem.0.0.weight"], own["global_net.stem.0.0.weight"])


def test_init_from_same_config_keeps_everything(tiny_weights, tiny_model):
    torch.manual_seed(2)
    target = LandmarkNet(tiny_config())
    kept, reinit = init_from(target, tiny_weights)
    assert reinit == [] and sorted(kept) == sorted(target.state_dict())
    target.eval()
    with torch.no_grad():
        torch.testing.assert_close(target(x_input())["final"], tiny_model(x_input())["final"], rtol=0, atol=0)


def test_init_from_foreign_file(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(WeightsError):
        init_from(LandmarkNet(tiny_config()), path)


def test_weights_files_are_written_atomically_with_the_usual_permissions(tmp_path):
    """safetensors alone writes 0600 files in place; fflm writes through fflm.fileio.atomic_write."""
    import os
    import stat

    from fflm.detect.model import DetectorConfig, FaceNet
    from fflm.detect.weights import save_detector

    old = os.umask(0o022)
    try:
        save_model(tmp_path / "w.safetensors", LandmarkNet(tiny_config()))
        save_detector(tmp_path / "d.safetensors", FaceNet(DetectorConfig(widths=(4, 4, 8, 8, 8), fpn=8)))
    finally:
        os.umask(old)
    for name in ("w.safetensors", "d.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["d.safetensors", "w.safetensors"]


# ---------------------------------------------------------------- the shipped files, by name


def test_every_shipped_name_is_a_file_of_its_kind():
    from fflm.weights import DETECTOR_FORMAT, SHIPPED, raw_header, shipped

    kinds = {name: raw_header(shipped(name))["format"] for name in SHIPPED}
    assert kinds == {"300w-68": FORMAT, "300w-68-stacks2": FORMAT, "300w-68-fast": FORMAT, "detector": DETECTOR_FORMAT}
    assert shipped("300w-68").name == "fflm-300w-68.safetensors" and shipped("300w-68").parent.name == "assets"
    with pytest.raises(WeightsError, match="300w-68, 300w-68-stacks2, 300w-68-fast, detector"):
        shipped("300w-98")


def test_resolve_names_paths_and_the_default(tmp_path, monkeypatch, tiny_weights):
    from pathlib import Path

    from fflm.weights import DEFAULT_WEIGHTS, resolve, shipped

    assert resolve(None) == DEFAULT_WEIGHTS == shipped("300w-68")
    assert resolve(None, "detector") == shipped("detector")
    assert resolve("300w-68-stacks2") == resolve(Path("300w-68-stacks2")) == shipped("300w-68-stacks2")
    assert resolve(tiny_weights) == tiny_weights and resolve(str(tiny_weights)) == tiny_weights
    monkeypatch.chdir(tmp_path)
    (tmp_path / "detector").write_bytes(tiny_weights.read_bytes())  # a file here of a shipped name is that file
    assert resolve("detector") == Path("detector")
    assert read_header(resolve("detector"))[0] == read_header(tiny_weights)[0]


def test_describe_and_load_take_a_shipped_name():
    from fflm.weights import file_sha256, shipped

    d = describe("300w-68-stacks2")
    assert d["file"]["sha256"] == file_sha256(shipped("300w-68-stacks2")) and "stacks 2" in d["model"]["global_net"]
    assert describe("detector")["detector"]["parameters"] > 0 and "model" not in describe("detector")
    model, _ = load_model("300w-68")
    assert model.config.global_net.stacks == 1
