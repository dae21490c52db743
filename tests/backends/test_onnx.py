"""The networks as ONNX: `fflm export --format onnx` and the onnxruntime backend (the fflm[onnx] extra): the same
landmarks as torch, files from other weights refused by name, and one clear line without the extra."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from fflm.pipeline import Landmarker

from conftest import SHARED, detect_landmarks, needs_shared, one_error, run_cli

ROOT = Path(__file__).resolve().parents[2]
ASTRONAUT = ROOT / "fflm" / "assets" / "astronaut.png"


@pytest.fixture(autouse=True)
def onnxruntime_installed():
    pytest.importorskip("onnxruntime")


def test_export_writes_the_networks_with_a_dynamic_batch_and_the_manifest(onnx_dir):
    import onnx
    import onnxruntime as ort

    from fflm.weights import DEFAULT_WEIGHTS, asset, file_sha256

    manifest = json.loads((onnx_dir / "fflm-onnx.json").read_text())
    files = ["detector.onnx", "detector-verifier.onnx", "global.onnx", "regional-0.onnx"]
    # the default detector, YuNet, is an ONNX file already: the folder holds a copy beside the exported networks
    assert sorted(p.name for p in onnx_dir.glob("*.onnx")) == sorted([*files, "yunet.onnx"])
    assert manifest["yunet"]["sha256"] == file_sha256(onnx_dir / "yunet.onnx") == file_sha256(asset("yunet_2026may.onnx"))
    assert manifest["weights"]["sha256"] == file_sha256(DEFAULT_WEIGHTS)
    assert manifest["scheme"]["num_points"] == 68 and len(manifest["regional"]["regions"]) == 4
    assert manifest["preprocess"]["proxy_size"] == 256 and manifest["preprocess"]["std"][0] == pytest.approx(58.395)
    for name in files:
        model = onnx.load(str(onnx_dir / name))
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    session = ort.InferenceSession(str(onnx_dir / "global.onnx"), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a named, dynamic batch axis
    for b in (1, 3):
        maps = session.run(None, {"input": np.zeros((b, 3, 256, 256), np.float32)})
        assert [m.shape for m in maps] == [(b, 68, 64, 64)]
    regional = ort.InferenceSession(str(onnx_dir / "regional-0.onnx"), providers=["CPUExecutionProvider"])
    assert regional.run(None, {"input": np.zeros((5, 12, 128, 128), np.float32)})[0].shape[0] == 5


def test_onnxruntime_gives_the_landmarks_of_torch(onnx_dir):
    torch_lm = Landmarker(device="cpu", precision="float32")
    ort_lm = Landmarker(backend="onnxruntime", onnx_dir=onnx_dir)
    images = [ASTRONAUT]
    if (SHARED / "data" / "300w" / "val").is_dir():
        images += sorted((SHARED / "data" / "300w" / "val").glob("*.jpg"))[:2]
    for a, b in zip(torch_lm.predict_batch(images), ort_lm.predict_batch(images)):
        assert len(a) == len(b) >= 1
        for fa, fb in zip(a, b):
            assert np.abs(fa.box - fb.box).max() < 0.01  # the detector runs in ONNX Runtime too
            assert np.abs(fa.landmarks - fb.landmarks).max() < 0.05
            assert np.abs(fa.landmark_scores - fb.landmark_scores).max() < 1e-3


def test_cli_detect_with_onnxruntime_matches_torch(onnx_dir, capsys):
    ref = detect_landmarks(capsys, ASTRONAUT, "--threads", "1")
    got = detect_landmarks(capsys, ASTRONAUT, "--backend", "onnxruntime", "--onnx-dir", onnx_dir)
    assert np.abs(ref - got).max() < 0.05


def test_an_export_of_other_weights_is_refused_by_name(onnx_dir, weights, capsys):
    rc, _, err = run_cli(capsys, "detect", ASTRONAUT, "--weights", weights, "--backend", "onnxruntime",
                         "--onnx-dir", onnx_dir)
    line = one_error(err)
    assert rc == 1 and "exported from other weights" in line and "fflm-300w-68.safetensors" in line and "tiny" in line


def test_an_export_of_another_scheme_is_refused_by_name(onnx_dir, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(onnx_dir, other)
    manifest = json.loads((other / "fflm-onnx.json").read_text())
    manifest["scheme"]["name"] = "wflw98"
    (other / "fflm-onnx.json").write_text(json.dumps(manifest))
    rc, _, err = run_cli(capsys, "detect", ASTRONAUT, "--backend", "onnxruntime", "--onnx-dir", other)
    assert rc == 1 and "scheme 'wflw98'" in one_error(err)
    (other / "fflm-onnx.json").unlink()
    rc, _, err = run_cli(capsys, "eval", ROOT / "tests" / "golden", "--backend", "onnxruntime", "--onnx-dir", other)
    assert rc == 1 and "no fflm-onnx.json" in one_error(err)


@pytest.mark.parametrize("args, says", [
    (["--backend", "onnxruntime"], "go together"),
    (["--onnx-dir", "."], "go together"),
    (["--backend", "onnxruntime", "--onnx-dir", "nowhere"], "no such folder"),
    (["--backend", "onnxruntime", "--onnx-dir", ".", "--precision", "bfloat16"], "float32"),
])
def test_backend_usage_errors(args, says, capsys):
    rc, _, err = run_cli(capsys, "detect", ASTRONAUT, *args)
    assert rc == 2 and says in one_error(err)


@pytest.mark.parametrize("command", [["detect", str(ASTRONAUT), "--backend", "onnxruntime", "--onnx-dir", "."],
                                     ["export", "--format", "onnx", "out"]])
def test_without_the_extra_one_line_names_it(command, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    for module in ("onnxruntime", "onnxscript"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as when not installed
    rc, _, err = run_cli(capsys, *command)
    assert rc == 2 and "pip install 'fflm[onnx]'" in one_error(err)
    assert not (tmp_path / "out").exists()


@needs_shared
def test_yunet_is_found_through_the_export_folder(onnx_dir, tmp_path, capsys):
    from fflm.weights import file_sha256

    yunet = SHARED / "models" / "yunet_2026may.onnx"
    other = tmp_path / "with-yunet"
    shutil.copytree(onnx_dir, other)
    shutil.copyfile(yunet, other / "yunet.onnx")
    manifest = json.loads((other / "fflm-onnx.json").read_text())
    manifest["yunet"] = {"file": "yunet.onnx", "source": yunet.name, "sha256": file_sha256(yunet)}
    (other / "fflm-onnx.json").write_text(json.dumps(manifest))
    rc, out, _ = run_cli(capsys, "detect", ASTRONAUT, "--detector", "yunet", "--detector-model", yunet)
    rc2, out2, _ = run_cli(capsys, "detect", ASTRONAUT, "--detector", "yunet", "--backend", "onnxruntime",
                           "--onnx-dir", other)
    assert rc == rc2 == 0
    a, b = json.loads(out)["faces"], json.loads(out2)["faces"]
    assert len(a) == len(b) == 1 and np.abs(np.array(a[0]["box"]) - np.array(b[0]["box"])).max() < 1e-6


def test_export_takes_a_shipped_file_by_name(tmp_path, capsys):
    for module in ("onnxscript", "onnx"):
        pytest.importorskip(module)
    rc, _, _ = run_cli(capsys, "export", "--format", "onnx", "--weights", "300w-68-fast", tmp_path / "fast")
    assert rc == 0
    assert json.loads((tmp_path / "fast" / "fflm-onnx.json").read_text())["weights"]["source"] == "fflm-300w-68-fast.safetensors"
    rc, _, err = run_cli(capsys, "export", "--format", "onnx", "--weights", "nowhere.safetensors", tmp_path / "x")
    assert rc == 2 and "no such weights file: nowhere.safetensors" in one_error(err)
