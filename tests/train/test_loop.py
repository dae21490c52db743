"""The training loop (fflm.train.loop) and `fflm train`, with conftest's tiny model on a few tiny faces built on
the fly: the run directory, the exported weights and their metadata, the loss going down, resume, Ctrl-C,
`--init` from weights of another shape, seeds, and the command's bad inputs.

Runs are kept to a handful of steps at 64 px (each epoch also writes a checkpoint, two .safetensors and a plot).
`loop.preset` (the shipped recipes, far too big for a test) is replaced by the tiny configuration for the whole
module; `--init tiny.safetensors` takes the other road to the same tiny model."""

from __future__ import annotations

import csv
import json
import os
import signal
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fflm.model import LandmarkNet
from fflm.model.config import HourglassConfig
from fflm.scheme import IBUG68
from fflm.train import loop
from fflm.train.data import Augment, LandmarkDataset, SourceBatches
from fflm.train.loop import TrainConfig, TrainError, TrainInterrupted, build_model, lr_at, train
from fflm.weights import load_model, read_header, save_model

from conftest import faces, one_error, randomise_batchnorm, run_cli as cli, tiny_config

N = 68
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_FILES = {"config.json", "checkpoint.pt", "log.csv", "curves.png", "best.safetensors", "last.safetensors"}


# --- helpers -------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch):
    """New runs build conftest's tiny model instead of the shipped recipe."""
    def preset(variant, scheme, crop_size, width=None, stacks=None):
        w = width or 8
        return tiny_config(scheme=scheme.to_dict(), crop_size=crop_size,
                           global_net=HourglassConfig(width=w, depth=2, stem_stride=4, stacks=stacks or 1),
                           regional_net=HourglassConfig(width=w, depth=1, stem_stride=4))

    monkeypatch.setattr(loop, "preset", preset)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("faces")
    return faces(root / "train", 4), faces(root / "val", 2, seed=1)


def config(out: Path, train_dir: Path, **kw) -> TrainConfig:
    base = dict(data=str(train_dir), out=str(out), resolution=64, crop_size=32, epochs=2, batch_size=2, warmup_steps=2)
    return TrainConfig(**{**base, **kw})


def run(cfg: TrainConfig, resume: bool = False) -> tuple[Path, list[str]]:
    messages: list[str] = []
    return train(cfg, resume=resume, progress=False, log=messages.append), messages


def log_rows(out: Path) -> list[dict]:
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def is_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert cv2.imread(str(path)) is not None


def ctrl_c() -> None:
    """What Ctrl-C does: SIGINT to this process. Only when training has its own handler installed: under Python's
    default one this would raise KeyboardInterrupt and stop the whole pytest session."""
    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, signal.SIG_DFL, signal.SIG_IGN, None):
        raise RuntimeError("no SIGINT handler installed during training: Ctrl-C would abort without a checkpoint")
    os.kill(os.getpid(), signal.SIGINT)


def interrupt_at_step(monkeypatch, k: int) -> None:
    """Press Ctrl-C during training step k (1-based, counted over the whole run)."""
    real, calls = loop.landmark_loss, [0]

    def loss(*args, **kwargs):
        calls[0] += 1
        if calls[0] == k:
            ctrl_c()
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "landmark_loss", loss)


def tiny_args(train_dir: Path, out: Path, *more) -> list:
    return ["train", "--data", train_dir, "--out", out, "--resolution", 64, "--crop-size", 32, "--batch-size", 2,
            "--device", "cpu", *more]


# --- configuration and schedule ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [dict(loss="l3"), dict(precision="float16"), dict(resolution=32), dict(resolution=5000), dict(epochs=0), dict(batch_size=0)])
def test_train_config_rejects(bad):
    with pytest.raises(TrainError):
        TrainConfig(data="x", **bad)


def test_train_config_defaults():
    cfg = TrainConfig(data="x")
    assert (cfg.resolution, cfg.crop_size, cfg.epochs, cfg.batch_size, cfg.loss, cfg.lr, cfg.seed) == (256, 128, 30, 8, "l2", 1e-3, 0)
    assert cfg.augment == asdict(Augment())


def test_lr_schedule():
    cfg = TrainConfig(data="x", lr=1e-3, lr_min=1e-5, warmup_steps=4)
    assert [lr_at(s, 104, cfg) for s in range(4)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])  # linear warm-up
    assert lr_at(4, 104, cfg) == pytest.approx(1e-3)
    assert lr_at(54, 104, cfg) == pytest.approx((1e-3 + 1e-5) / 2)  # cosine half way
    assert lr_at(104, 104, cfg) == pytest.approx(1e-5) and lr_at(500, 104, cfg) == pytest.approx(1e-5)
    after = [lr_at(s, 104, cfg) for s in range(4, 105)]
    assert all(a >= b for a, b in zip(after, after[1:]))


# --- a run and what it leaves --------------------------------------------------------------------------------


def test_run_directory(tmp_path, data):
    train_dir, val_dir = data
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when pytest runs in the background
    cfg = config(tmp_path / "run", train_dir, val=str(val_dir))
    best, messages = run(cfg)
    out = tmp_path / "run"
    assert best == out / "best.safetensors"
    assert {p.name for p in out.iterdir()} == RUN_FILES  # no temporary file left
    assert json.loads((out / "config.json").read_text()) == asdict(cfg)
    rows = log_rows(out)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for key in ("loss", "global", "regional", "lr", "val_nme", "val_nme_global", "val_nme_refined_pts",
                "val_nme_global_on_refined_pts", "seconds"):
        assert all(np.isfinite(float(r[key])) for r in rows), key
    for r in rows:  # Eq. 1: the loss is the global term plus the refined term
        assert float(r["loss"]) == pytest.approx(float(r["global"]) + float(r["regional"]), rel=1e-6)
        # the mean over all points is the point-count-weighted mean of the refined and the other points
        n, k = IBUG68.num_points, len(IBUG68.refined_indices)
        assert n * float(r["val_nme"]) == pytest.approx(k * float(r["val_nme_refined_pts"])
                                                        + (n - k) * float(r["val_nme_unrefined_pts"]), rel=1e-6)
    assert messages[0] == "networks in float32 (--precision auto)"  # auto: float32 in tests (conftest)
    assert messages[1] == f"{train_dir}: 4 faces, frames of 64 px, drawn 1× an epoch"
    assert messages[2] == "warm-up shortened to 0 steps (a tenth of the run's 4)"
    assert len(messages) == 5 and messages[3].startswith("epoch 1") and "val_nme" in messages[3]
    is_png(out / "curves.png")

    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (state["epoch"], state["step"]) == (2, 4)  # 4 faces, batch 2: 2 steps an epoch
    assert state["best"] == pytest.approx(min(float(r["val_nme"]) for r in rows), abs=1e-3)
    assert set(state) >= {"model", "optimizer", "rng"}

    model, meta = load_model(out / "last.safetensors")
    assert isinstance(model, LandmarkNet) and model.config == tiny_config(crop_size=32)
    assert meta["epoch"] == 2 and (meta["samples"], meta["val_samples"]) == (4, 2)
    assert meta["train"] == asdict(cfg)
    assert meta["val_nme"] == pytest.approx(float(rows[-1]["val_nme"]), abs=1e-4)
    last = load_file(str(out / "last.safetensors"))
    for k, v in state["model"].items():
        torch.testing.assert_close(last[k], v)  # the exported model is the checkpoint's
    best_model, best_meta = load_model(best)
    best_epoch = 1 + int(np.argmin([float(r["val_nme"]) for r in rows]))
    assert best_meta["epoch"] == best_epoch

    # the exported model runs
    with torch.inference_mode():
        pts = model(torch.zeros(1, 3, 64, 64))["final"]
    assert pts.shape == (1, N, 2)
    assert signal.getsignal(signal.SIGINT) is before  # the SIGINT handler was put back


def test_run_without_validation_keeps_the_lowest_loss(tmp_path, data):
    train_dir, _ = data
    run(config(tmp_path / "run", train_dir))
    rows = log_rows(tmp_path / "run")
    assert "val_nme" not in rows[0]
    best = 1 + int(np.argmin([float(r["loss"]) for r in rows]))
    assert read_header(tmp_path / "run" / "best.safetensors")[1]["epoch"] == best
    assert read_header(tmp_path / "run" / "last.safetensors")[1]["epoch"] == 2


def test_info_reads_training_metadata(tmp_path, data, capsys, monkeypatch):
    train_dir, val_dir = data
    run(config(tmp_path / "run", train_dir, val=str(val_dir), epochs=1))
    rc, out, err = cli(capsys, "info", tmp_path / "run" / "best.safetensors", "--json")
    assert rc == 0 and err == ""
    d = json.loads(out)
    t = d["training"]
    assert (t["epoch"], t["samples"], t["val_samples"]) == (1, 4, 2)
    assert t["train"]["resolution"] == 64 and t["train"]["data"] == [str(train_dir)]
    assert "val_nme" in t and d["model"]["crop_size"] == 32 and d["scheme"]["points"] == N
    monkeypatch.setenv("COLUMNS", "200")
    rc, out, _ = cli(capsys, "info", tmp_path / "run" / "last.safetensors")
    assert rc == 0 and "training" in out and "val_nme" in out and '"resolution":' in out


def test_loss_goes_down(tmp_path):
    """Two faces seen over and over, no augmentation: the training loss falls epoch after epoch."""
    train_dir = faces(tmp_path / "two", 8, distinct=2)
    cfg = config(tmp_path / "run", train_dir, epochs=3, lr=1e-2, lr_min=1e-2, warmup_steps=1, jitter=0.0,
                 centre_jitter=0.0, augment=asdict(Augment.none()))
    run(cfg)
    losses = [float(r["loss"]) for r in log_rows(tmp_path / "run")]
    assert losses[1] < losses[0] and losses[2] < losses[1], losses
    assert losses[2] < 0.9 * losses[0], losses


# --- resume and Ctrl-C ---------------------------------------------------------------------------------------


def test_resume_continues_at_the_right_epoch(tmp_path, data):
    train_dir, _ = data
    flat = dict(lr_min=1e-3)  # a flat schedule: extending a run changes a cosine's course, not a flat one's
    run(config(tmp_path / "run", train_dir, epochs=1, **flat))
    assert [r["epoch"] for r in log_rows(tmp_path / "run")] == ["1"]
    _, messages = run(config(tmp_path / "run", train_dir, epochs=2, **flat), resume=True)
    assert [r["epoch"] for r in log_rows(tmp_path / "run")] == ["1", "2"]
    assert any(m.startswith(f"resuming {tmp_path / 'run'} at epoch 2/2") for m in messages), messages
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert (state["epoch"], state["step"]) == (2, 4)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 1  # the recipe as first written
    assert read_header(tmp_path / "run" / "last.safetensors")[1]["train"]["epochs"] == 2

    # the same as a run never stopped: model, optimiser, schedule, random state and data order all carried over
    run(config(tmp_path / "straight", train_dir, epochs=2, **flat))
    a, b = log_rows(tmp_path / "run"), log_rows(tmp_path / "straight")
    for key in ("loss", "global", "regional", "lr"):
        assert [float(r[key]) for r in a] == pytest.approx([float(r[key]) for r in b], rel=1e-5), key
    resumed, straight = load_file(str(tmp_path / "run" / "last.safetensors")), load_file(str(tmp_path / "straight" / "last.safetensors"))
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=1e-4, atol=1e-5)


def test_resume_a_finished_run_is_refused_and_changes_nothing(tmp_path, data):
    train_dir, _ = data
    run(config(tmp_path / "run", train_dir, epochs=1))
    before = (tmp_path / "run" / "last.safetensors").read_bytes()
    with pytest.raises(TrainError, match="has trained 1 epochs already: give --epochs above 1"):
        run(config(tmp_path / "run", train_dir, epochs=1), resume=True)
    assert [r["epoch"] for r in log_rows(tmp_path / "run")] == ["1"]
    assert (tmp_path / "run" / "last.safetensors").read_bytes() == before


def test_resume_and_run_directory_errors(tmp_path, data):
    train_dir, _ = data
    with pytest.raises(TrainError, match="no checkpoint"):
        run(config(tmp_path / "empty", train_dir), resume=True)
    run(config(tmp_path / "run", train_dir, epochs=1))
    with pytest.raises(TrainError, match="already holds a run"):
        run(config(tmp_path / "run", train_dir, epochs=1))


def test_ctrl_c_saves_a_checkpoint_and_resume_repeats_the_epoch(tmp_path, data, monkeypatch):
    train_dir, _ = data
    before = signal.getsignal(signal.SIGINT)
    interrupt_at_step(monkeypatch, 3)  # the first step of epoch 2
    out = tmp_path / "run"
    with pytest.raises(TrainInterrupted, match=f"interrupted: checkpoint saved in {out / 'checkpoint.pt'}"):
        run(config(tmp_path / "run", train_dir, epochs=3))
    assert signal.getsignal(signal.SIGINT) is before
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (state["epoch"], state["step"]) == (1, 3)  # the interrupted epoch does not count
    assert [r["epoch"] for r in log_rows(out)] == ["1"]
    assert read_header(out / "last.safetensors")[1]["epoch"] == 1
    assert not any(p.suffix == ".tmp" for p in out.iterdir())

    _, messages = run(config(out, train_dir, epochs=3), resume=True)
    assert any(m.startswith(f"resuming {out} at epoch 2/3") for m in messages), messages
    assert [r["epoch"] for r in log_rows(out)] == ["1", "2", "3"]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 3


def test_keyboard_interrupt_while_loading_data_saves_a_checkpoint(tmp_path, data, monkeypatch):
    """A KeyboardInterrupt raised inside the loop (here by the data loader) is handled like Ctrl-C."""
    train_dir, _ = data
    before = signal.getsignal(signal.SIGINT)
    real, calls = LandmarkDataset.__getitem__, [0]

    def getitem(self, i):
        calls[0] += 1
        if calls[0] == 5:  # the first face of epoch 2
            raise KeyboardInterrupt
        return real(self, i)

    monkeypatch.setattr(LandmarkDataset, "__getitem__", getitem)
    try:
        with pytest.raises(TrainInterrupted, match="interrupted: checkpoint saved"):
            run(config(tmp_path / "run", train_dir, epochs=2))
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped the training loop without a checkpoint")
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert [r["epoch"] for r in log_rows(tmp_path / "run")] == ["1"]
    assert signal.getsignal(signal.SIGINT) is before


# --- --init and seeds ----------------------------------------------------------------------------------------


def small_mouth_scheme(path: Path) -> Path:
    """The 68 points with the inner mouth (60-67) left out of the refined mouth region: the mouth's regional
    network has 12 outputs instead of 20."""
    d = IBUG68.to_dict()
    d["name"] = "ibug68-outer-mouth"
    d["regions"][3]["indices"] = list(range(48, 60))
    path.write_text(json.dumps(d))
    return path


def test_init_from_weights_of_another_shape(tmp_path, data, weights):
    train_dir, _ = data
    scheme = small_mouth_scheme(tmp_path / "scheme.json")
    cfg = config(tmp_path / "run", train_dir, scheme=str(scheme), init=str(weights), epochs=1)
    torch.manual_seed(123)
    model, notes = build_model(cfg)
    source = load_file(str(weights))
    own = model.state_dict()
    kept = [k for k in own if k in source and source[k].shape == own[k].shape]
    fresh = sorted(set(own) - set(kept))
    assert fresh and all(k.startswith("regional_nets.0.3.") for k in fresh)  # only the mouth's output layer changed
    for k in kept:
        torch.testing.assert_close(own[k], source[k], rtol=0, atol=0)
    for k in fresh:
        assert own[k].shape != source[k].shape
    [note] = notes
    assert f"kept {len(kept)} tensors, re-initialised {len(fresh)}" in note and fresh[0] in note
    assert model.config.crop_size == 32 and model.scheme.regions[3].indices == tuple(range(48, 60))

    _, messages = run(cfg)  # and it trains, saying what it kept
    assert messages[0] == note
    model, meta = load_model(tmp_path / "run" / "best.safetensors")
    assert model.scheme.name == "ibug68-outer-mouth" and meta["train"]["init"] == str(weights)


def test_the_scheme_follows_init_unless_given(tmp_path, data):
    """Fine-tuning keeps the --init file's own regions (e.g. shipped weights with more refined regions) unless
    --scheme says otherwise; without --init the default is the built-in 68 points."""
    train_dir, _ = data
    d = json.loads(small_mouth_scheme(tmp_path / "scheme.json").read_text())
    path = tmp_path / "outer-mouth.safetensors"
    save_model(path, LandmarkNet(tiny_config(scheme=d)).eval(), {})
    model, [note] = build_model(config(tmp_path / "a", train_dir, init=str(path)))
    assert model.scheme.name == "ibug68-outer-mouth" and "re-initialised 0" in note
    model, [note] = build_model(config(tmp_path / "b", train_dir, init=str(path), scheme="68"))
    assert model.scheme == IBUG68 and "re-initialised 0" not in note
    assert build_model(config(tmp_path / "c", train_dir))[0].scheme == IBUG68


def test_init_from_weights_of_the_same_shape_keeps_everything(tmp_path, data, weights):
    train_dir, _ = data
    model, [note] = build_model(config(tmp_path / "run", train_dir, init=str(weights)))
    source = load_file(str(weights))
    assert f"kept {len(source)} tensors, re-initialised 0" in note
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, source[k], rtol=0, atol=0)


def test_width_sets_every_hourglass_and_changes_what_init_keeps(tmp_path, data, weights):
    train_dir, _ = data
    model, _ = build_model(config(tmp_path / "a", train_dir, width=12))
    assert model.config.global_net.width == model.config.regional_net.width == 12
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in build_model(
        config(tmp_path / "b", train_dir, width=16))[0].parameters())
    model, [note] = build_model(config(tmp_path / "c", train_dir, init=str(weights), width=12))
    base, _ = read_header(weights)
    assert base.global_net.width != 12 and model.config.global_net.width == model.config.regional_net.width == 12
    assert "re-initialised 0" not in note  # the convolutions changed shape
    assert model.config.proxy_size == base.proxy_size and model.config.scheme == base.scheme  # the rest is --init's


def test_stacks_grows_the_global_network_without_changing_its_output(tmp_path, data, weights):
    """--stacks 2 from one-stack weights keeps every tensor of the file; the added stack starts as a copy of the
    first behind zeroed merges, so the grown network's points equal the file's before training."""
    from fflm.weights import load_model

    train_dir, _ = data
    assert build_model(config(tmp_path / "a", train_dir, stacks=2))[0].config.global_net.stacks == 2
    base, _ = read_header(weights)
    assert base.global_net.stacks == 1
    model, [grown, note] = build_model(config(tmp_path / "b", train_dir, init=str(weights), stacks=2))
    source = load_file(str(weights))
    assert model.config.global_net.stacks == 2 and model.config.regional_net.stacks == 1
    assert f"kept {len(source)} tensors, re-initialised 0" in note and "global stack 2 starts as a copy of stack 1" in grown
    state = model.state_dict()
    torch.testing.assert_close(state["global_net.heads.1.weight"], source["global_net.heads.0.weight"])
    assert float(state["global_net.merge_features.0.weight"].abs().max()) == 0.0
    old, _ = load_model(weights)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        new_maps, old_maps = model.eval().global_net(x), old.global_net(x)
    assert len(new_maps) == 2 and len(old_maps) == 1
    torch.testing.assert_close(new_maps[1], old_maps[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(new_maps[0], old_maps[0], rtol=1e-5, atol=1e-5)


def test_init_keeps_the_mirror_offset_unless_refit(tmp_path, data, weights):
    """Fine-tuning keeps the file's calibrated offset (and says so); --refit starts it from 0."""
    from fflm.weights import load_model, save_model

    train_dir, _ = data
    model, meta = load_model(weights)
    model.config.mirror_offset = 0.9
    save_model(tmp_path / "cal.safetensors", model, meta)
    kept, notes = build_model(config(tmp_path / "run", train_dir, init=str(tmp_path / "cal.safetensors")))
    assert kept.config.mirror_offset == 0.9 and any("kept its mirror offset +0.9 " in n for n in notes)
    assert kept.config.mirror_offset_unit == model.config.mirror_offset_unit
    refit = build_model(config(tmp_path / "r", train_dir, init=str(tmp_path / "cal.safetensors"), refit=True))[0]
    assert refit.config.mirror_offset == 0.0


def test_seed_gives_identical_runs(tmp_path, data):
    """With augmentation and box jitter on: the same seed twice gives the same run, another seed another run."""
    train_dir, _ = data
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        run(config(tmp_path / name, train_dir, seed=seed))
    logs = {n: [(r["loss"], r["global"], r["regional"]) for r in log_rows(tmp_path / n)] for n in "abc"}
    weights = {n: load_file(str(tmp_path / n / "last.safetensors")) for n in "abc"}
    assert logs["a"] == logs["b"]
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])
    assert logs["a"] != logs["c"]
    assert not all(torch.equal(weights["a"][k], weights["c"][k]) for k in weights["a"])


def test_data_loading_workers_give_the_same_run(tmp_path, data):
    """--workers only moves data loading to other processes: the faces (and their augmentation, which changes
    from epoch to epoch) are the same, so is the run."""
    train_dir, _ = data
    for name, workers in (("inline", 0), ("workers", 1)):
        run(config(tmp_path / name, train_dir, workers=workers))
    a, b = log_rows(tmp_path / "inline"), log_rows(tmp_path / "workers")
    assert [float(r["loss"]) for r in a] == pytest.approx([float(r["loss"]) for r in b], rel=1e-5)


# --- fflm train ----------------------------------------------------------------------------------------------


def test_cli_train_end_to_end(capsys, tmp_path, data, weights):
    train_dir, val_dir = data
    out = tmp_path / "run"
    rc, stdout, err = cli(capsys, *tiny_args(train_dir, out, "--val", val_dir, "--epochs", 1, "--init", weights,
                                             "--seed", 3, "--lr", 2e-3, "--loss", "wing", "--max-val", 1,
                                             "--warmup", 7))
    assert rc == 0, err
    assert stdout == ""  # data only on stdout: a training run has none
    assert "error" not in err.lower()
    assert f"--init {weights}: kept" in err and "re-initialised 0" in err
    assert err.strip().splitlines()[-1] == f"fflm: best weights: {out / 'best.safetensors'}"
    assert {p.name for p in out.iterdir()} == RUN_FILES
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["epochs"], cfg["seed"], cfg["lr"], cfg["loss"], cfg["resolution"], cfg["crop_size"], cfg["max_val"],
            cfg["warmup_steps"]) == (1, 3, 2e-3, "wing", 64, 32, 1, 7)
    model, meta = load_model(out / "best.safetensors")
    assert meta["val_samples"] == 1 and model.config.crop_size == 32


def test_cli_resume_keeps_the_runs_epochs(capsys, tmp_path, data, monkeypatch):
    """`fflm train --resume RUN` after Ctrl-C finishes the run as planned (--epochs 2), no more."""
    train_dir, _ = data
    out = tmp_path / "run"
    interrupt_at_step(monkeypatch, 3)  # Ctrl-C in epoch 2
    rc, _, err = cli(capsys, *tiny_args(train_dir, out, "--epochs", 2))
    assert rc in (0, 130) and "interrupted: checkpoint saved" in err
    assert [r["epoch"] for r in log_rows(out)] == ["1"]
    rc, _, err = cli(capsys, "train", "--resume", out, "--device", "cpu")  # (Ctrl-C came once: at step 3 only)
    assert rc == 0, err
    assert "resuming" in err and "at epoch 2/2" in err
    assert [r["epoch"] for r in log_rows(out)] == ["1", "2"]
    rc, _, err = cli(capsys, "train", "--resume", out, "--epochs", 3, "--device", "cpu")  # extend the run
    assert rc == 0 and [r["epoch"] for r in log_rows(out)] == ["1", "2", "3"]


def test_cli_ctrl_c_in_the_first_epoch(capsys, tmp_path, data, monkeypatch):
    train_dir, _ = data
    out = tmp_path / "run"
    interrupt_at_step(monkeypatch, 1)
    rc, stdout, err = cli(capsys, *tiny_args(train_dir, out, "--epochs", 2))
    assert rc in (0, 130) and stdout == ""
    assert "error" not in err.lower()
    assert f"continue with --resume {out}" in err
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 0
    assert not (out / "best.safetensors").exists()
    assert "best.safetensors" not in err  # no best weights to point at yet


def test_cli_init_from_another_scheme_says_what_was_reinitialised(capsys, tmp_path, data, weights):
    train_dir, _ = data
    scheme = small_mouth_scheme(tmp_path / "scheme.json")
    rc, _, err = cli(capsys, *tiny_args(train_dir, tmp_path / "run", "--epochs", 1, "--init", weights,
                                        "--scheme", scheme))
    assert rc == 0, err
    [line] = [l for l in err.splitlines() if l.startswith("--init")]
    assert "re-initialised" in line and "regional_nets.0.3." in line and "re-initialised 0" not in line


def _malformed(d: Path) -> Path:
    faces(d, 2)
    (d / "f1.pts").write_text("version: 1\nn_points: 68\n{\n1 2\nthree 4\n}\n")
    return d


def _wrong_count(d: Path) -> Path:
    faces(d, 2)
    (d / "f0.pts").write_text("version: 1\nn_points: 2\n{\n1 2\n3 4\n}\n")
    return d


@pytest.mark.parametrize("case, rc, words", [
    ("no_data", 2, "--data"),
    ("missing_data", 2, "no such file or directory"),
    ("missing_val", 2, "no such file or directory"),
    ("missing_init", 2, "no such file or directory"),
    ("empty_data", 1, "no annotated images"),
    ("malformed_pts", 1, "f1.pts:5"),
    ("wrong_point_count", 1, "2 points"),
    ("unknown_scheme", 1, "no built-in scheme or file named 'nope'"),
    ("bad_scheme_file", 1, "scheme"),
    ("bad_loss", 2, "--loss"),
    ("small_resolution", 2, "--resolution"),
    ("bad_precision", 2, "--precision"),
    ("bad_augment", 2, "--augment: unknown augmentation 'rotation'"),
    ("proxy_over_resolution", 1, "the proxy (128 px) is larger than the training frames (--resolution 64)"),
    ("proxy_not_a_multiple", 1, "proxy_size 72 must be a multiple of 16"),
    ("odd_width", 2, "--width must be even"),
    ("init_not_weights", 1, "not a readable safetensors file"),
    ("resume_nothing", 1, "no checkpoint.pt"),
    ("run_exists", 1, "already holds a run"),
])
def test_cli_train_bad_inputs(capsys, tmp_path, data, case, rc, words):
    train_dir, _ = data
    out = tmp_path / "run"
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad_scheme.json").write_text('{"num_points": 68, "norm_points": [36]}')
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    args = {
        "no_data": ["train", "--out", out],
        "missing_data": tiny_args(tmp_path / "nope", out),
        "missing_val": tiny_args(train_dir, out, "--val", tmp_path / "nope"),
        "missing_init": tiny_args(train_dir, out, "--init", tmp_path / "nope.safetensors"),
        "empty_data": tiny_args(tmp_path / "empty", out),
        "malformed_pts": tiny_args(_malformed(tmp_path / "malformed"), out),
        "wrong_point_count": tiny_args(_wrong_count(tmp_path / "count"), out),
        "unknown_scheme": tiny_args(train_dir, out, "--scheme", "nope"),
        "bad_scheme_file": tiny_args(train_dir, out, "--scheme", tmp_path / "bad_scheme.json"),
        "bad_loss": tiny_args(train_dir, out, "--loss", "l3"),
        "small_resolution": tiny_args(train_dir, out, "--resolution", 32),
        "bad_precision": tiny_args(train_dir, out, "--precision", "float16"),
        "bad_augment": tiny_args(train_dir, out, "--augment", "rotation=6"),
        "proxy_over_resolution": tiny_args(train_dir, out, "--proxy-size", 128),
        "proxy_not_a_multiple": tiny_args(train_dir, out, "--resolution", 128, "--proxy-size", 72),
        "odd_width": tiny_args(train_dir, out, "--width", 33),
        "init_not_weights": tiny_args(train_dir, out, "--init", tmp_path / "junk.safetensors"),
        "resume_nothing": ["train", "--resume", tmp_path / "empty"],
        "run_exists": tiny_args(train_dir, out, "--epochs", 1),
    }[case]
    if case == "run_exists":
        assert cli(capsys, *args)[0] == 0
    code, stdout, err = cli(capsys, *args)
    assert (code, stdout) == (rc, "")
    assert words in one_error(err)
    if case not in ("run_exists",):
        assert not (out / "checkpoint.pt").exists()


def test_cli_train_width(capsys, tmp_path, data):
    train_dir, _ = data
    rc, _, _ = cli(capsys, *tiny_args(train_dir, tmp_path / "run", "--epochs", 1, "--width", 12))
    config, meta = read_header(tmp_path / "run" / "best.safetensors")
    assert rc == 0 and config.global_net.width == config.regional_net.width == 12 and meta["train"]["width"] == 12


def test_cli_train_stacks(capsys, tmp_path, data):
    train_dir, _ = data
    rc, _, _ = cli(capsys, *tiny_args(train_dir, tmp_path / "run", "--epochs", 1, "--stacks", 2))
    config, meta = read_header(tmp_path / "run" / "best.safetensors")
    assert rc == 0 and config.global_net.stacks == 2 and config.regional_net.stacks == 1 and meta["train"]["stacks"] == 2


def test_cli_train_proxy_size_and_precision(capsys, tmp_path, data):
    train_dir, _ = data
    rc, _, err = cli(capsys, *tiny_args(train_dir, tmp_path / "run", "--epochs", 1, "--resolution", 128,
                                        "--proxy-size", 96, "--precision", "bfloat16"))
    config, meta = read_header(tmp_path / "run" / "best.safetensors")
    assert rc == 0 and "networks in bfloat16 (--precision bfloat16)" in err
    assert config.proxy_size == 96 and meta["train"]["proxy_size"] == 96 and meta["train"]["resolution"] == 128
    assert meta["train"]["precision"] == "bfloat16" and meta["dtype"] == "bfloat16"


def test_cli_train_augment(capsys, tmp_path, data):
    train_dir, _ = data
    rc, _, _ = cli(capsys, *tiny_args(train_dir, tmp_path / "run", "--epochs", 1, "--augment", "rotate=6,jpeg=0"))
    expected = asdict(Augment(rotate=6.0, jpeg=0.0))
    assert rc == 0 and json.loads((tmp_path / "run" / "config.json").read_text())["augment"] == expected
    assert read_header(tmp_path / "run" / "best.safetensors")[1]["train"]["augment"] == expected
    rc, _, _ = cli(capsys, *tiny_args(train_dir, tmp_path / "plain", "--epochs", 1))
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["augment"] == asdict(Augment())


def test_proxy_size_is_what_the_global_stage_sees(tmp_path, data):
    """Frames at --resolution, the global hourglass fed the --proxy-size area-average, the crops cut from the frames;
    an --init file's proxy size carries over unless given."""
    train_dir, _ = data
    model, _ = build_model(config(tmp_path, train_dir, resolution=128, proxy_size=96))
    seen = []
    model.global_net.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    model.regional_nets[0][0].register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    model(torch.rand(2, 3, 128, 128) * 255)
    assert seen == [(96, 96), (32, 32)]

    run(config(tmp_path / "run", train_dir, epochs=1, resolution=128, proxy_size=96))
    inherited, _ = build_model(config(tmp_path, train_dir, resolution=128, init=str(tmp_path / "run" / "best.safetensors")))
    assert inherited.config.proxy_size == 96
    assert build_model(config(tmp_path, train_dir, resolution=128))[0].config.proxy_size == 64  # the preset's


def test_bfloat16_mixed_precision_training(tmp_path, data):
    """--precision bfloat16: every convolution runs in bfloat16 while the weights, the optimiser and the points the
    loss sees stay float32, and the run follows the float32 run of the same seed closely."""
    train_dir, val_dir = data
    dtypes: set = set()
    real = torch.nn.Conv2d._conv_forward

    def spy(self, x, weight, bias):
        out = real(self, x, weight, bias)
        dtypes.add(out.dtype)  # autocast casts inside the call: the input may still be float32
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.Conv2d, "_conv_forward", spy)
        best, messages = run(config(tmp_path / "bf16", train_dir, val=str(val_dir), precision="bfloat16"))
    assert messages[0] == "networks in bfloat16 (--precision bfloat16)"
    assert dtypes == {torch.bfloat16}  # training steps and validation alike
    state = torch.load(tmp_path / "bf16" / "checkpoint.pt", weights_only=False)
    assert {v.dtype for v in state["model"].values() if v.is_floating_point()} == {torch.float32}
    assert {t.dtype for s in state["optimizer"]["state"].values() for k, t in s.items() if k != "step"} == {torch.float32}
    assert {v.dtype for v in load_file(str(best)).values() if v.is_floating_point()} == {torch.float32}
    assert read_header(best)[1]["dtype"] == "bfloat16"

    run(config(tmp_path / "fp32", train_dir, val=str(val_dir), precision="float32"))
    bf, fp = log_rows(tmp_path / "bf16"), log_rows(tmp_path / "fp32")
    for key in ("loss", "val_nme"):  # bfloat16 keeps 8 bits of mantissa: the same run within a few per cent
        assert [float(r[key]) for r in bf] == pytest.approx([float(r[key]) for r in fp], rel=0.05), key
    assert [float(r["loss"]) for r in bf] != [float(r["loss"]) for r in fp]  # and it did run in bfloat16


def test_teacher_targets_move_from_the_annotations_to_the_teachers_mirrored_points():
    torch.manual_seed(5)
    teacher = randomise_batchnorm(LandmarkNet(tiny_config())).eval()
    images, truth = torch.rand(2, 3, 64, 64) * 255, torch.rand(2, N, 2) * 64
    with torch.no_grad():
        mirrored, plain = teacher(images, flip=True)["final"], teacher(images)["final"]
    assert not torch.allclose(mirrored, plain)  # an asymmetric network: the mirrored pass changes its answer
    torch.testing.assert_close(loop.teacher_targets(teacher, images, truth, 0.0), truth, rtol=0, atol=0)
    torch.testing.assert_close(loop.teacher_targets(teacher, images, truth, 1.0), mirrored)
    torch.testing.assert_close(loop.teacher_targets(teacher, images, truth, 0.25), 0.75 * truth + 0.25 * mirrored)


def test_a_run_with_a_teacher_trains_on_its_blended_targets(tmp_path, data, weights, monkeypatch):
    """Every step's targets are the annotations moved --distill of the way to the teacher's points on the same
    augmented frames; without a teacher they are the annotations."""
    train_dir, _ = data
    teacher, _ = load_model(weights)
    seen, real = [], loop.train_step

    def step(model, opt, images, truth, cfg, dtype=torch.float32, weights=None):
        seen.append((images.clone(), truth.clone()))
        return real(model, opt, images, truth, cfg, dtype, weights)

    monkeypatch.setattr(loop, "train_step", step)
    run(config(tmp_path / "plain", train_dir, epochs=1, seed=3))
    plain = seen[:]
    seen.clear()
    _, messages = run(config(tmp_path / "kd", train_dir, epochs=1, seed=3, teacher=str(weights), distill=0.3))
    assert f"targets 0.3 of the way from the annotations to {weights}'s points" in messages
    assert len(seen) == len(plain) == 2
    for (images, targets), (same_images, truth) in zip(seen, plain):
        torch.testing.assert_close(images, same_images, rtol=0, atol=0)  # same seed: the same augmented frames
        with torch.no_grad():
            points = teacher(images, flip=True)["final"]
        assert not torch.allclose(targets, truth)
        torch.testing.assert_close(targets, truth + 0.3 * (points - truth))
    meta = read_header(tmp_path / "kd" / "best.safetensors")[1]
    assert meta["train"]["teacher"] == str(weights) and meta["train"]["distill"] == 0.3


def test_a_source_with_distill_0_keeps_its_labels_and_skips_the_teacher(tmp_path, data, weights, monkeypatch):
    """A source's own distill setting overrides --distill for its batches; 0 trains on its labels alone and
    does not run the teacher on them."""
    train_dir, _ = data
    sources = [str(train_dir), f"{train_dir},distill=0"]
    seen, real, calls, real_targets = [], loop.train_step, [], loop.teacher_targets

    def step(model, opt, images, truth, cfg, dtype=torch.float32, weights=None):
        seen.append((images.clone(), truth.clone()))
        return real(model, opt, images, truth, cfg, dtype, weights)

    def targets(*args, **kw):
        calls.append(args[3])
        return real_targets(*args, **kw)

    monkeypatch.setattr(loop, "train_step", step)
    monkeypatch.setattr(loop, "teacher_targets", targets)
    run(config(tmp_path / "plain", train_dir, data=sources, epochs=1, seed=3))
    plain = seen[:]
    seen.clear()
    cfg = config(tmp_path / "kd", train_dir, data=sources, epochs=1, seed=3, teacher=str(weights), distill=0.3)
    run(cfg)
    order = SourceBatches([4, 4], [1.0, 1.0], 2, 3).sources()
    assert len(seen) == len(plain) == len(order) == 4 and sorted(order) == [0, 0, 1, 1]
    assert calls == [0.3, 0.3]  # the teacher ran on the first source's batches only
    for source, (images, targets_), (_, truth) in zip(order, seen, plain):
        if source == 1:
            torch.testing.assert_close(targets_, truth, rtol=0, atol=0)
        else:
            assert not torch.allclose(targets_, truth)


def test_cli_train_teacher(capsys, tmp_path, data, weights):
    train_dir, _ = data
    rc, _, err = cli(capsys, *tiny_args(train_dir, tmp_path / "run", "--epochs", 1, "--teacher", weights,
                                        "--distill", 0.4))
    assert rc == 0 and "targets 0.4 of the way from the annotations to" in err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["teacher"], saved["distill"]) == (str(weights), 0.4)
    other = tmp_path / "five.safetensors"
    save_model(other, LandmarkNet(tiny_config(scheme={"num_points": 5, "norm_points": [0, 1]})))
    for more, code, words in [(("--teacher", tmp_path / "nope.safetensors"), 2, "no such file or directory"),
                              (("--teacher", weights, "--distill", 1.5), 2, "--distill"),
                              (("--teacher", other), 1, "has 5 points, the run's scheme 68")]:
        rc, stdout, err = cli(capsys, *tiny_args(train_dir, tmp_path / "bad", "--epochs", 1, *more))
        assert (rc, stdout) == (code, "") and words in one_error(err)
        assert not (tmp_path / "bad" / "checkpoint.pt").exists()


def test_resuming_a_run_from_before_precision_keeps_float32(tmp_path, data):
    train_dir, _ = data
    run(config(tmp_path / "run", train_dir, epochs=1))
    path = tmp_path / "run" / "config.json"
    saved = json.loads(path.read_text())
    del saved["precision"]
    path.write_text(json.dumps(saved))
    _, messages = run(config(tmp_path / "run", train_dir, epochs=2, precision="bfloat16"), resume=True)
    assert messages[0] == "networks in float32 (--precision float32)"


def test_cli_train_help(capsys):
    rc, out, _ = cli(capsys, "train", "--help")
    assert rc == 0 and "Examples" in out
    for opt in ("--data", "--val", "--resume", "--init", "--epochs", "--resolution", "--crop-size", "--seed"):
        assert opt in out, opt


def test_a_run_fits_its_shape_model_from_the_training_faces(tmp_path, monkeypatch):
    """The shipped recipe has a shape model: a run fits it on its training faces and exports it."""
    monkeypatch.setattr(loop, "preset", lambda variant, scheme, crop_size, width=None, stacks=None: tiny_config(
        scheme=scheme.to_dict(), crop_size=crop_size, shape_prior={"components": 3}))
    train_dir = faces(tmp_path / "train", 6)
    best, messages = run(config(tmp_path / "run", train_dir, epochs=1))
    assert "shape model: 3 modes fitted on 6 faces" in messages
    model, _ = load_model(best)
    assert model.shape_model() is not None and model.shape_model().components.shape == (3, 68, 2)
    few = faces(tmp_path / "few", 3)
    _, messages = run(config(tmp_path / "run2", few, epochs=1))
    assert "shape model: 3 faces are too few for 3 modes; none stored" in messages


# --- weight averaging ----------------------------------------------------------------------------------------


def test_ema_exports_the_moving_average_of_the_weights(tmp_path, data, monkeypatch):
    """With --ema d the exported weights are e_1 = w_1, e_k = d_k e_(k-1) + (1 - d_k) w_k over the weights after
    each step (BatchNorm statistics too), d_k = min(d, k / (9 + k)) (the warm-up); the raw weights stay in the
    checkpoint and their val NME is logged."""
    train_dir, val_dir = data
    seen: list[dict] = []
    real = torch.optim.swa_utils.AveragedModel.update_parameters

    def record(self, model):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return real(self, model)

    monkeypatch.setattr(torch.optim.swa_utils.AveragedModel, "update_parameters", record)
    run(config(tmp_path / "run", train_dir, val=str(val_dir), epochs=1, ema=0.75))
    d = 2 / 11  # the warm-up's decay at the second step, below 0.75
    assert len(seen) == 2  # 4 faces, batch 2
    exported, state = load_file(str(tmp_path / "run" / "last.safetensors")), torch.load(
        tmp_path / "run" / "checkpoint.pt", weights_only=False)
    moved = 0
    for k, w2 in seen[1].items():
        if not w2.is_floating_point():
            continue
        expected = d * seen[0][k] + (1 - d) * w2
        torch.testing.assert_close(exported[k], expected)
        torch.testing.assert_close(state["model"][k], w2)  # the checkpoint keeps the raw weights to go on from
        moved += int(not torch.equal(seen[0][k], w2))
    assert moved > 10  # the weights changed between the steps, so the average differs from both
    row = log_rows(tmp_path / "run")[0]
    assert np.isfinite(float(row["val_nme_raw"])) and float(row["val_nme_raw"]) != float(row["val_nme"])


def test_ema_resumes_with_its_average(tmp_path, data):
    train_dir, _ = data
    flat = dict(ema=0.9, lr_min=1e-3)  # a flat schedule, as in test_resume_continues_at_the_right_epoch
    run(config(tmp_path / "run", train_dir, epochs=1, **flat))
    run(config(tmp_path / "run", train_dir, epochs=2, **flat), resume=True)
    run(config(tmp_path / "straight", train_dir, epochs=2, **flat))
    resumed, straight = load_file(str(tmp_path / "run" / "last.safetensors")), load_file(str(tmp_path / "straight" / "last.safetensors"))
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=1e-4, atol=1e-5)


def test_cli_train_ema(capsys, tmp_path, data):
    train_dir, val_dir = data
    rc, _, err = cli(capsys, *tiny_args(train_dir, tmp_path / "run", "--val", val_dir, "--epochs", 1, "--ema", 0.9))
    assert rc == 0, err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["ema"] == 0.9
    assert "val_nme_raw" in log_rows(tmp_path / "run")[0]
    rc, _, err = cli(capsys, *tiny_args(train_dir, tmp_path / "bad", "--ema", 1.5))
    assert rc == 2 and "--ema" in err
