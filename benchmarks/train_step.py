"""Where a training step's time goes, float32 against bfloat16 mixed precision, as a table.

    python benchmarks/train_step.py [--weights W] [--threads 2] [--batch-size 8] [--rounds 5] [--data DIR]

Times one optimiser step of the training loop (`fflm.train.loop.train_step`: forward through both stages with
region-box jitter, the L1 loss, backward, gradient clipping, Adam) of the given weights on random frames, the precisions taking turns for `--rounds` rounds (median
and range). With `--data`, also the time to decode and augment one batch of faces from that folder (the data
pipeline runs in float32 whatever the precision).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from fflm.scheme import IBUG68
from fflm.annotations import read_annotations
from fflm.train.data import Augment, LandmarkDataset
from fflm.train.loop import TrainConfig, train_step
from fflm.weights import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="300w-68")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", help="a 300-W style folder: also time decoding and augmenting a batch")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, _ = load_model(args.weights)
    model.train()
    scheme, side = model.scheme, model.config.proxy_size
    opt = torch.optim.Adam(model.parameters(), lr=1e-6)
    frames = torch.rand(args.batch_size, 3, side, side) * 255
    truth = side * (0.3 + 0.4 * torch.rand(args.batch_size, scheme.num_points, 2))

    cfg = TrainConfig(data="", loss="l1", resolution=side)  # the loop's defaults: box jitter, clipping

    def step(dtype: torch.dtype) -> float:
        t = time.perf_counter()
        train_step(model, opt, frames, truth, cfg, dtype)
        return 1000 * (time.perf_counter() - t)

    dtypes = (torch.float32, torch.bfloat16)
    for d in dtypes:  # warm-up: first calls pick kernels
        step(d)
    times: dict = {d: [] for d in dtypes}
    for _ in range(args.rounds):
        for d in dtypes:
            times[d].append(step(d))
    table = Table(title=f"one training step, batch {args.batch_size}, {side} px, {args.threads} thread(s): "
                        f"median of {args.rounds} (range)")
    table.add_column("what")
    table.add_column("ms", justify="right")
    for d in dtypes:
        ms = times[d]
        table.add_row(f"step, {str(d).removeprefix('torch.')}", f"{statistics.median(ms):.0f} ({min(ms):.0f}-{max(ms):.0f})")
    if args.data:
        samples = read_annotations(args.data, IBUG68.num_points)
        ds = LandmarkDataset(samples, scheme, side, model.config.frame_scale, Augment(), seed=0)
        ms = []
        for r in range(args.rounds):
            t = time.perf_counter()
            for i in range(args.batch_size):
                ds[(r * args.batch_size + i) % len(ds)]
            ms.append(1000 * (time.perf_counter() - t))
        table.add_row("decode + augment a batch", f"{statistics.median(ms):.0f} ({min(ms):.0f}-{max(ms):.0f})")
    Console().print(table)


if __name__ == "__main__":
    main()
