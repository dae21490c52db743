"""fflm.train.run: the learning-rate schedule by hand, checkpoints that replace the old one only once complete,
SIGINT as a flag, and the CSV log growing a column."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from fflm.train import run


def test_lr_schedule_hand_values():
    assert run.warmup_steps(200, 1000) == 100 and run.warmup_steps(50, 1000) == 50  # at most a tenth of the run
    assert [run.lr_at(s, 40, 1.0, 0.0, 4) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert run.lr_at(4, 40, 1.0, 0.0, 4) == pytest.approx(1.0)
    assert run.lr_at(22, 40, 1.0, 0.2, 4) == pytest.approx(0.6)  # half way through the cosine: the mean
    assert run.lr_at(40, 40, 1.0, 0.2, 4) == pytest.approx(0.2) == run.lr_at(99, 40, 1.0, 0.2, 4)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    run.set_lr(opt, 0.125)
    assert opt.param_groups[0]["lr"] == 0.125


def test_checkpoint_round_trip_and_a_failed_save_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    run.save_checkpoint(path, {"step": 3, "w": torch.arange(4.0)})
    got = run.load_checkpoint(path)
    assert got["step"] == 3 and torch.equal(got["w"], torch.arange(4.0))

    def broken(obj, f):  # noqa: ANN001
        f.write(b"half a checkpoint")
        raise RuntimeError("disk gone")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError):
        run.save_checkpoint(path, {"step": 4})
    monkeypatch.undo()
    assert run.load_checkpoint(path)["step"] == 3 and os.listdir(tmp_path) == ["checkpoint.pt"]


def test_interrupt_turns_sigint_into_a_flag_and_restores_the_handler():
    before = signal.getsignal(signal.SIGINT)
    with run.Interrupt() as stop:
        assert not stop.hit
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: the handler sets the flag
        assert stop.hit
    assert signal.getsignal(signal.SIGINT) is before


def test_log_rows_gain_columns_and_read_back(tmp_path):
    path = tmp_path / "log.csv"
    assert run.read_log(path) == []
    run.append_log(path, {"epoch": 1, "loss": 0.5})
    run.append_log(path, {"epoch": 2, "loss": 0.25, "val_nme": 3.1})
    assert run.read_log(path) == [{"epoch": "1", "loss": "0.5", "val_nme": ""},
                                  {"epoch": "2", "loss": "0.25", "val_nme": "3.1"}]
    assert path.read_text().splitlines()[0] == "epoch,loss,val_nme"
