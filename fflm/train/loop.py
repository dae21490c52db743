"""The training loop: run directories, checkpoints that resume, validation, export of the best model.

A run directory holds `config.json`, `checkpoint.pt` (model, optimiser, scheduler, epoch, best score),
`log.csv` (per epoch: losses, validation NME, learning rate, time), `curves.png`, and the exported
`best.safetensors` / `last.safetensors` with configuration and training metadata in their headers.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from fflm.annotations import read_annotations
from fflm.errors import TrainError, TrainInterrupted
from fflm.inference import PRECISIONS, compute_dtype, networks_in
from fflm.model import LandmarkNet, ModelConfig, preset
from fflm.scheme import IBUG68, LandmarkScheme, load_scheme
from fflm.sources import Source, read_source
from fflm.train.average import moving_average
from fflm.train.data import Augment, LandmarkDataset, SourceBatches
from fflm.train.losses import LOSSES, landmark_loss
from fflm.train.shape import fit_shape
from fflm.weights import WeightsError, init_from, load_model, read_header, save_model


# what a resumed run may change: where it runs and how long; every other option is the run's recipe
RESUMABLE = ("device", "workers", "threads", "epochs")


@dataclass
class TrainConfig:
    data: list[str]  # training sources, each `PATH[,KEY=VALUE,...]` (fflm.sources)
    val: str | None = None
    out: str = "runs/fflm"
    scheme: str | None = None  # a built-in name or a scheme file; None: --init's scheme, else the 68 points
    variant: str = "regular"
    width: int | None = None  # channels of every hourglass; None: the preset's 64, or --init's
    stacks: int | None = None  # hourglasses stacked in the global network; None: the preset's 1, or --init's
    proxy_size: int | None = None  # the global stage's input side; None: the preset's 256, or --init's
    resolution: int = 256
    crop_size: int = 128
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    lr_min: float = 1e-5
    warmup_steps: int = 200
    loss: str = "l2"
    clip_grad: float = 5.0
    jitter: float = 0.1
    centre_jitter: float = 0.05
    init: str | None = None
    refit: bool = False  # with init: fit the shape model and the mirror offset anew instead of keeping the file's
    device: str = "cpu"
    seed: int = 0
    workers: int = 0
    threads: int = 0
    max_val: int = 0
    precision: str = "auto"  # the networks' arithmetic (fflm.inference.PRECISIONS); weights and optimiser stay float32
    ema: float = 0.0  # decay of the exponential moving average of the weights that is validated and exported; 0: off
    augment: dict = field(default_factory=lambda: asdict(Augment()))
    teacher: str | None = None  # weights whose points on the same augmented frames blend into the targets
    distill: float = 0.5  # how far the targets move from the annotations to the teacher's points (with a teacher)

    def __post_init__(self) -> None:
        self.data = [self.data] if isinstance(self.data, str) else list(self.data)
        self.data = [d for d in self.data if d]
        try:
            self.sources = [Source.parse(d) for d in self.data]
        except ValueError as e:
            raise TrainError(f"--data {e}") from None
        if self.loss not in LOSSES:
            raise TrainError(f"unknown loss {self.loss!r} (one of {', '.join(LOSSES)})")
        if not 64 <= self.resolution <= 4096:
            raise TrainError("resolution must be within 64..4096")
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainError("epochs and batch size must be positive")
        if not 0.0 <= self.ema < 1.0:
            raise TrainError("ema decay must be within [0, 1)")
        if not 0.0 <= self.distill <= 1.0:
            raise TrainError("distill must be within [0, 1]")
        if self.precision not in PRECISIONS:
            raise TrainError(f"unknown precision {self.precision!r} (one of {', '.join(PRECISIONS)})")


def run_scheme(cfg: TrainConfig) -> LandmarkScheme:
    """The run's landmark scheme: `cfg.scheme`, else the `--init` file's own (fine-tuning keeps its regions), else
    the built-in 68 points."""
    if cfg.scheme:
        return load_scheme(cfg.scheme)
    return read_header(cfg.init)[0].landmark_scheme if cfg.init else IBUG68


def build_model(cfg: TrainConfig) -> tuple[LandmarkNet, list[str]]:
    """A fresh model for the run, initialised from `cfg.init` where shapes match; notes on what was kept."""
    scheme = run_scheme(cfg)
    notes = []
    if cfg.init:
        base, _ = read_header(cfg.init)
        # fine-tuning keeps the file's mirror offset unless asked to refit it (its annotations' convention)
        model_cfg = ModelConfig(**{**asdict(base), "scheme": scheme.to_dict(), "crop_size": cfg.crop_size,
                                   "mirror_offset": 0.0 if cfg.refit else base.mirror_offset})
        if not cfg.refit and base.mirror_offset:
            unit = "px" if base.mirror_offset_unit == "px" else "of the face frame"
            notes.append(f"--init {cfg.init}: kept its mirror offset {base.mirror_offset:+.4g} {unit} (--refit: "
                         "measure it anew with python -m fflm.train.calibrate)")
        if cfg.width:
            model_cfg = replace(model_cfg, global_net=replace(model_cfg.global_net, width=cfg.width),
                                regional_net=replace(model_cfg.regional_net, width=cfg.width))
        if cfg.stacks:
            model_cfg = replace(model_cfg, global_net=replace(model_cfg.global_net, stacks=cfg.stacks))
    else:
        model_cfg = preset(cfg.variant, scheme, cfg.crop_size, cfg.width, cfg.stacks)
    if cfg.proxy_size:
        try:
            model_cfg = replace(model_cfg, proxy_size=cfg.proxy_size)
        except ValueError as e:  # not a multiple of the global hourglass's downsampling
            raise TrainError(str(e)) from None
    if model_cfg.proxy_size > cfg.resolution:  # the proxy is an area-average of the frame, never an enlargement
        raise TrainError(f"the proxy ({model_cfg.proxy_size} px) is larger than the training frames "
                         f"(--resolution {cfg.resolution})")
    model = LandmarkNet(model_cfg)
    if cfg.init:
        kept, fresh = init_from(model, cfg.init)
        trained = base.global_net.stacks
        if trained < model_cfg.global_net.stacks and base.global_net.width == model_cfg.global_net.width:
            grown = {f"global_net.{n}" for n in model.global_net.grow(trained)}
            fresh = [k for k in fresh if k not in grown]
            added = ", ".join(str(k) for k in range(trained + 1, model_cfg.global_net.stacks + 1))
            notes.append(f"--init {cfg.init}: global stack {added} starts as a copy of stack {trained} behind zeroed "
                         f"merges ({len(grown)} tensors; the output is unchanged)")
        notes.append(f"--init {cfg.init}: kept {len(kept)} tensors, re-initialised {len(fresh)}"
                     + (f" ({', '.join(fresh[:6])}{'…' if len(fresh) > 6 else ''})" if fresh else ""))
    return model, notes


def load_teacher(cfg: TrainConfig, scheme: LandmarkScheme, device: torch.device) -> LandmarkNet | None:
    """The run's teacher (--teacher) in inference mode, or None; its scheme must have the run's points."""
    if not cfg.teacher:
        return None
    try:
        teacher, _ = load_model(cfg.teacher, device)
    except WeightsError as e:
        raise TrainError(f"--teacher: {e}") from None
    if teacher.scheme.num_points != scheme.num_points:
        raise TrainError(f"--teacher {cfg.teacher} has {teacher.scheme.num_points} points, the run's scheme "
                         f"{scheme.num_points}")
    return teacher


def warmup_steps(cfg: TrainConfig, total: int) -> int:
    """The warm-up actually used: `cfg.warmup_steps`, but never more than a tenth of the run."""
    return min(cfg.warmup_steps, total // 10)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine from lr to lr_min over the run."""
    warm = warmup_steps(cfg, total)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))


@torch.inference_mode()
def validate(model: LandmarkNet, loader: DataLoader, device: torch.device,
             dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Mean inter-ocular NME (%) on frames from the truth: final points and the global stage alone; the networks
    run in `dtype` (under autocast)."""
    from fflm.evaluate import nme

    model.eval()
    finals, globals_, truths = [], [], []
    for images, pts, _ in loader:
        with networks_in(dtype, device):
            out = model(images.to(device).float())
        finals.append(out["final"].cpu().numpy())
        globals_.append(out["global"][-1].cpu().numpy())
        truths.append(pts.numpy())
    truth = np.concatenate(truths)
    norm = model.scheme.norm_points
    ref = model.scheme.refined_indices
    rest = model.scheme.unrefined_indices
    f, g = np.concatenate(finals), np.concatenate(globals_)
    return {
        "val_nme": 100 * float(nme(f, truth, norm).mean()),
        "val_nme_global": 100 * float(nme(g, truth, norm).mean()),
        "val_nme_refined_pts": 100 * float(nme(f[:, ref], truth[:, ref], norm, truth).mean()),
        "val_nme_global_on_refined_pts": 100 * float(nme(g[:, ref], truth[:, ref], norm, truth).mean()),
        # the points only the global stage places (the jaw of the 68-point scheme)
        "val_nme_unrefined_pts": 100 * float(nme(f[:, rest], truth[:, rest], norm, truth).mean()) if rest else 0.0,
    }


def train_step(model: LandmarkNet, opt: torch.optim.Optimizer, images: torch.Tensor, truth: torch.Tensor,
               cfg: TrainConfig, dtype: torch.dtype = torch.float32,
               weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """One optimiser step on a batch of frames [B, 3, R, R] and their points [B, N, 2] (per-point loss `weights`
    [B, N]): forward with region-box jitter, the run's loss, backward, gradient clipping, the update. Returns the
    loss and its parts."""
    # mixed precision: the convolutions in `dtype`, the soft-argmax (hence the loss) in float32
    with networks_in(dtype, images.device):
        outputs = model(images, cfg.jitter, cfg.centre_jitter)
    scheme = model.scheme
    loss, parts = landmark_loss(outputs, truth, float(images.shape[-1]), scheme.refined_indices, scheme.norm_points,
                                cfg.loss, weights)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip_grad:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
    opt.step()
    return loss, parts


@torch.no_grad()
def teacher_targets(teacher: LandmarkNet, images: torch.Tensor, truth: torch.Tensor, weight: float,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The targets moved `weight` of the way from the annotations `truth` [B, N, 2] to the teacher's final points on
    the same augmented frames [B, 3, R, R] (both stages, each averaged with its mirrored pass): distillation from a
    stronger model, whose answers are consistent where annotators place points differently (along the jaw). The
    teacher's mirror offset is not added: mirrored training cannot learn it; calibrate the result afterwards."""
    with networks_in(dtype, images.device):
        points = teacher(images, flip=True)["final"].float()
    return truth + weight * (points - truth)


class _Interrupt:
    """Turns SIGINT/SIGTERM into a flag so the loop can save a checkpoint and leave cleanly."""

    def __init__(self) -> None:
        self.hit = False

    def __enter__(self) -> "_Interrupt":
        self.old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, *_: object) -> None:
        self.hit = True

    def __exit__(self, *_: object) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)


def resumed_config(cfg: TrainConfig, out: Path, given: set[str] | None) -> TrainConfig:
    """The run's saved recipe with what a resume may change (RESUMABLE) taken from `cfg`; an option in `given`
    (what the user set on the command line) that contradicts the recipe is refused by name. `given` None (a
    library call): `cfg`'s epochs apply, the rest of `cfg` is ignored."""
    saved = {"precision": "float32", "refit": False, **json.loads((out / "config.json").read_text())}
    for name in sorted((given or set()) - set(RESUMABLE) - {"out"}):
        if name in saved and getattr(cfg, name) != saved[name]:
            raise TrainError(f"--{name.replace('_', '-')} {getattr(cfg, name)} contradicts the run in {out} "
                             f"({saved[name]}); a resumed run may change only --epochs, --device, --workers, --threads")
    epochs = cfg.epochs if given is None or "epochs" in given else saved["epochs"]
    return TrainConfig(**{**saved, "device": cfg.device, "workers": cfg.workers, "threads": cfg.threads,
                          "epochs": epochs})


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, log=print,
          given: set[str] | None = None) -> Path:
    """Train (or resume) a run; returns the path of the best exported weights. `given`: the options the user set
    (a resume refuses those that contradict the run). Raises TrainInterrupted after saving the checkpoint when
    SIGINT or SIGTERM stops it."""
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    if resume:
        if not ckpt_path.is_file():
            raise TrainError(f"{out}: no checkpoint.pt to resume from")
        cfg = resumed_config(cfg, out, given)
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state["epoch"] >= cfg.epochs:
            raise TrainError(f"{out} has trained {state['epoch']} epochs already: give --epochs above "
                             f"{state['epoch']} to continue it")
    elif ckpt_path.exists():
        raise TrainError(f"{out} already holds a run: use --resume {out} or another --out")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    dtype = compute_dtype(cfg.precision, device)
    dtype_name = str(dtype).removeprefix("torch.")
    torch.manual_seed(cfg.seed)
    scheme = run_scheme(cfg)
    model, notes = build_model(cfg)
    teacher = load_teacher(cfg, scheme, device)
    for n in notes:
        log(n)
    model.to(device)
    if not cfg.sources:
        raise TrainError("no training data (--data)")
    per_source = [read_source(src, scheme.num_points, scheme.unrefined_indices) for src in cfg.sources]
    train_samples = [s for samples in per_source for s in samples]
    val_samples = read_annotations(cfg.val, scheme.num_points) if cfg.val else []
    kept_shape = cfg.init and not cfg.refit and model.shape_model() is not None
    if kept_shape:
        log(f"--init {cfg.init}: kept its shape model (--refit: fit it anew on this run's faces)")
    elif not resume and model.config.shape_prior.components:  # a resumed run has it in its checkpoint
        log(fit_shape(model, train_samples))
    if cfg.max_val:
        val_samples = val_samples[: cfg.max_val]
    log(f"networks in {dtype_name} (--precision {cfg.precision})")
    if teacher is not None:
        log(f"targets {cfg.distill:g} of the way from the annotations to {cfg.teacher}'s points")
    fs = model.config.frame_scale
    for src, samples in zip(cfg.sources, per_source):
        log(f"{src.path}: {len(samples)} faces, frames of {src.resolution or cfg.resolution} px, drawn "
            f"{src.repeat:g}× an epoch")
    sets = [LandmarkDataset(samples, scheme, src.resolution or cfg.resolution, fs, Augment(**cfg.augment), cfg.seed)
            for src, samples in zip(cfg.sources, per_source)]
    # every batch from one source, so its frames share one side; the order is fixed by (seed, epoch): a resumed
    # run sees the same batches. Workers are not persistent: a persistent worker keeps its copy of the datasets and
    # never sees their epoch change, so every epoch would get the first epoch's augmentation
    batches = SourceBatches([len(d) for d in sets], [src.repeat for src in cfg.sources], cfg.batch_size, cfg.seed)
    loader = DataLoader(torch.utils.data.ConcatDataset(sets), batch_sampler=batches, num_workers=cfg.workers)
    val_loader = (DataLoader(LandmarkDataset(val_samples, scheme, cfg.resolution, fs, None), 16, num_workers=0)
                  if val_samples else None)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # the averaged weights (buffers too: BatchNorm statistics) are what validation scores and the export holds;
    # the raw weights are still validated and logged (val_nme_raw) so the average's effect is measured
    ema = moving_average(model, cfg.ema) if cfg.ema else None
    served = ema.module if ema is not None else model
    start_epoch, best, step = 0, float("inf"), 0
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, best, step = state["epoch"], state["best"], state["step"]
        torch.set_rng_state(state["rng"])
        log(f"resuming {out} at epoch {start_epoch + 1}/{cfg.epochs} (best val NME {best:.3f} %)")
    else:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    total_steps = cfg.epochs * len(loader)
    if warmup_steps(cfg, total_steps) < cfg.warmup_steps:
        log(f"warm-up shortened to {warmup_steps(cfg, total_steps)} steps (a tenth of the run's {total_steps})")
    meta_base = {"train": asdict(cfg), "dtype": dtype_name, "samples": len(train_samples),
                 "val_samples": len(val_samples)}

    def save_checkpoint(epoch: int) -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "best": best,
                    "step": step, "rng": torch.get_rng_state(), "ema": ema.state_dict() if ema is not None else None},
                   tmp)
        tmp.replace(ckpt_path)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with _Interrupt() as stop, Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                        TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                        console=Console(stderr=True), disable=not progress) as bar:  # stdout is for data
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            batches.epoch = epoch
            for d in sets:
                d.epoch = epoch
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=len(loader), info="")
            t0, sums, n = time.time(), {}, 0
            try:
                for images, pts, weights in loader:
                    for g in opt.param_groups:
                        g["lr"] = lr_at(step, total_steps, cfg)
                    images, pts = images.to(device, non_blocking=True).float(), pts.to(device)
                    if teacher is not None:
                        pts = teacher_targets(teacher, images, pts, cfg.distill, dtype)
                    loss, parts = train_step(model, opt, images, pts, cfg, dtype, weights.to(device))
                    if ema is not None:
                        ema.update_parameters(model)
                    step += 1
                    n += 1
                    for k, v in {"loss": loss.item(), **parts}.items():
                        sums[k] = sums.get(k, 0.0) + v
                    bar.update(task, advance=1, info=f"loss {sums['loss'] / n:.5f}")
                    if stop.hit:
                        break
            except KeyboardInterrupt:  # raised past the SIGINT flag (e.g. by the data loader): the same as Ctrl-C
                stop.hit = True
            if stop.hit:  # the interrupted epoch is not counted: resume repeats it
                save_checkpoint(epoch)
                raise TrainInterrupted(f"interrupted: checkpoint saved in {ckpt_path}; continue with --resume {out}")
            row = {"epoch": epoch + 1, **{k: v / max(n, 1) for k, v in sums.items()}, "lr": opt.param_groups[0]["lr"]}
            if val_loader is not None:
                row.update(validate(served, val_loader, device, dtype))
                if ema is not None:
                    row["val_nme_raw"] = validate(model, val_loader, device, dtype)["val_nme"]
            row["seconds"] = round(time.time() - t0, 1)
            score = row.get("val_nme", row["loss"])
            meta = {**meta_base, "epoch": epoch + 1, **{k: round(v, 5) for k, v in row.items() if k.startswith("val")}}
            save_model(out / "last.safetensors", served, meta)
            if score < best:
                best = score
                save_model(out / "best.safetensors", served, meta)
            save_checkpoint(epoch + 1)
            _append_log(out / "log.csv", row)
            _plot_log(out / "log.csv", out / "curves.png")
            log("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
            bar.remove_task(task)
    return out / "best.safetensors"


def _append_log(path: Path, row: dict) -> None:
    rows = list(csv.DictReader(open(path))) if path.exists() else []
    rows.append({k: str(v) for k, v in row.items()})
    keys = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _plot_log(log_path: Path, png: Path) -> None:
    from fflm.plot import line_plot

    rows = list(csv.DictReader(open(log_path)))
    epochs = [float(r["epoch"]) for r in rows]
    series = {"train loss (x100)": [100 * float(r["loss"]) for r in rows]}
    if rows and rows[-1].get("val_nme"):
        series["val NME %"] = [float(r["val_nme"]) for r in rows]
        series["val NME % (global)"] = [float(r["val_nme_global"]) for r in rows]
    line_plot(png, epochs, series, "epoch", "", "training curves")
