"""What a training run needs whatever it trains: the learning-rate schedule, a checkpoint written atomically,
SIGINT and SIGTERM turned into a flag the loop checks, and the CSV log of its epochs. The moving average of the
weights is `fflm.train.average`."""

from __future__ import annotations

import csv
import io
import math
import signal
from pathlib import Path

import torch

from fflm.fileio import atomic_file, atomic_write


def warmup_steps(warmup: int, total: int) -> int:
    """The warm-up actually used: `warmup` steps, but never more than a tenth of the run's `total`."""
    return min(warmup, total // 10)


def lr_at(step: int, total: int, lr: float, lr_min: float, warmup: int) -> float:
    """Linear warm-up to `lr`, then cosine from `lr` to `lr_min` over the rest of the run's `total` steps."""
    warm = warmup_steps(warmup, total)
    if step < warm:
        return lr * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * t))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def save_checkpoint(path: str | Path, state: dict) -> None:
    """`state` (tensors, optimiser state, counters) as a torch file that replaces `path` only once complete."""
    with atomic_file(path) as f:
        torch.save(state, f)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by `save_checkpoint`, its tensors on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=False)


class Interrupt:
    """`with Interrupt() as stop:` SIGINT and SIGTERM set `stop.hit` instead of raising, so the loop can finish its
    step, save a checkpoint and leave cleanly; the previous handlers come back when the block ends."""

    def __init__(self) -> None:
        self.hit = False
        self.old: dict = {}

    def __enter__(self) -> "Interrupt":
        self.old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, *_: object) -> None:
        self.hit = True

    def __exit__(self, *_: object) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)


def read_log(path: str | Path) -> list[dict[str, str]]:
    """The rows of a log written by `append_log` (none when there is no file yet)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_log(path: str | Path, row: dict) -> None:
    """Add one epoch's row to the CSV log (a new column for a key no earlier row had), rewritten atomically."""
    rows = read_log(path) + [{k: str(v) for k, v in row.items()}]
    text = io.StringIO()
    w = csv.DictWriter(text, list(dict.fromkeys(k for r in rows for k in r)))
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, text.getvalue())
