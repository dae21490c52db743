"""The training loop: run directories, checkpoints that resume, validation, export of the best model.

A run directory holds `config.json`, `checkpoint.pt` (model, optimiser, scheduler, epoch, best score),
`log.csv` (per epoch: losses, validation NME, learning rate, time), `curves.png`, and the exported
`best.safetensors` / `last.safetensors` with configuration and training metadata in their headers.
"""

from __future__ import annotations

import json
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
from fflm.train import run
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


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """The run's learning rate at `step` of `total`: linear warm-up, then cosine from lr to lr_min."""
    return run.lr_at(step, total, cfg.lr, cfg.lr_min, cfg.warmup_steps)


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


@dataclass
class _Data:
    """A run's faces and the loaders over them."""

    sources: list[Source]
    per_source: list[list]
    val_samples: list
    sets: list[LandmarkDataset]
    batches: SourceBatches
    loader: DataLoader
    val_loader: DataLoader | None

    @property
    def faces(self) -> int:
        return sum(len(s) for s in self.per_source)


@dataclass
class _Run:
    """What changes while a run trains, with what it trains on."""

    cfg: TrainConfig
    out: Path
    model: LandmarkNet
    opt: torch.optim.Optimizer
    ema: torch.optim.swa_utils.AveragedModel | None
    teacher: LandmarkNet | None
    data: _Data
    device: torch.device
    dtype: torch.dtype
    step: int = 0
    best: float = float("inf")
    epoch: int = 0  # epochs done

    @property
    def served(self) -> LandmarkNet:
        """What validation scores and the export holds: the averaged weights when there are any."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    @property
    def total_steps(self) -> int:
        return self.cfg.epochs * len(self.data.loader)

    def save_checkpoint(self, epoch: int) -> None:
        run.save_checkpoint(self.checkpoint_path, {
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "epoch": epoch, "best": self.best,
            "step": self.step, "rng": torch.get_rng_state(),
            "ema": self.ema.state_dict() if self.ema is not None else None})

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.best, self.step = state["epoch"], state["best"], state["step"]
        torch.set_rng_state(state["rng"])


def _open_run(cfg: TrainConfig, resume: bool, given: set[str] | None) -> tuple[TrainConfig, dict | None]:
    """The run's configuration and, when resuming, its checkpoint; refuses a run that cannot start or go on."""
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    if not resume:
        if ckpt_path.exists():
            raise TrainError(f"{out} already holds a run: use --resume {out} or another --out")
        return cfg, None
    if not ckpt_path.is_file():
        raise TrainError(f"{out}: no checkpoint.pt to resume from")
    cfg = resumed_config(cfg, out, given)
    state = run.load_checkpoint(ckpt_path)
    if state["epoch"] >= cfg.epochs:
        raise TrainError(f"{out} has trained {state['epoch']} epochs already: give --epochs above "
                         f"{state['epoch']} to continue it")
    return cfg, state


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def _read_faces(cfg: TrainConfig, model: LandmarkNet, resume: bool, log) -> tuple[list[list], list]:  # noqa: ANN001
    """Each source's training faces and the validation faces; the shape model fitted on the training faces unless
    the run keeps --init's or has one in its checkpoint."""
    scheme = model.scheme
    if not cfg.sources:
        raise TrainError("no training data (--data)")
    per_source = [read_source(src, scheme.num_points, scheme.unrefined_indices) for src in cfg.sources]
    train_samples = [s for samples in per_source for s in samples]
    val_samples = read_annotations(cfg.val, scheme.num_points) if cfg.val else []
    if cfg.init and not cfg.refit and model.shape_model() is not None:
        log(f"--init {cfg.init}: kept its shape model (--refit: fit it anew on this run's faces)")
    elif not resume and model.config.shape_prior.components:  # a resumed run has it in its checkpoint
        log(fit_shape(model, train_samples))
    return per_source, val_samples[: cfg.max_val] if cfg.max_val else val_samples


def _loaders(cfg: TrainConfig, model: LandmarkNet, per_source: list[list], val_samples: list, log) -> _Data:  # noqa: ANN001
    """Datasets and loaders: every batch from one source, so its frames share one side; the order is fixed by
    (seed, epoch), so a resumed run sees the same batches. Workers are not persistent: a persistent worker keeps its
    copy of the datasets and never sees their epoch change, so every epoch would get the first epoch's
    augmentation."""
    scheme, fs = model.scheme, model.config.frame_scale
    for src, samples in zip(cfg.sources, per_source):
        log(f"{src.path}: {len(samples)} faces, frames of {src.resolution or cfg.resolution} px, drawn "
            f"{src.repeat:g}× an epoch")
    sets = [LandmarkDataset(samples, scheme, src.resolution or cfg.resolution, fs, Augment(**cfg.augment), cfg.seed)
            for src, samples in zip(cfg.sources, per_source)]
    batches = SourceBatches([len(d) for d in sets], [src.repeat for src in cfg.sources], cfg.batch_size, cfg.seed)
    loader = DataLoader(torch.utils.data.ConcatDataset(sets), batch_sampler=batches, num_workers=cfg.workers)
    val_loader = (DataLoader(LandmarkDataset(val_samples, scheme, cfg.resolution, fs, None), 16, num_workers=0)
                  if val_samples else None)
    return _Data(cfg.sources, per_source, val_samples, sets, batches, loader, val_loader)


def _train_epoch(r: _Run, stop: run.Interrupt, bar, task) -> tuple[dict[str, float], int]:  # noqa: ANN001
    """One epoch of optimiser steps (the learning rate set at each); the summed loss parts and the step count.
    On SIGINT or SIGTERM the checkpoint of the epoch's start is saved and TrainInterrupted raised: the interrupted
    epoch is not counted, a resumed run repeats it."""
    r.model.train()
    r.data.batches.epoch = r.epoch
    for d in r.data.sets:
        d.epoch = r.epoch
    sums: dict[str, float] = {}
    n = 0
    try:
        # the loader walks the sampler's batches in order, so each batch's source (and its distill share) is known
        shares = [r.cfg.distill if r.data.sources[i].distill is None else r.data.sources[i].distill
                  for i in r.data.batches.sources()] if r.teacher is not None else None
        for b, (images, pts, weights) in enumerate(r.data.loader):
            run.set_lr(r.opt, lr_at(r.step, r.total_steps, r.cfg))
            images, pts = images.to(r.device, non_blocking=True).float(), pts.to(r.device)
            if shares is not None and shares[b]:
                pts = teacher_targets(r.teacher, images, pts, shares[b], r.dtype)
            loss, parts = train_step(r.model, r.opt, images, pts, r.cfg, r.dtype, weights.to(r.device))
            if r.ema is not None:
                r.ema.update_parameters(r.model)
            r.step += 1
            n += 1
            for k, v in {"loss": loss.item(), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.update(task, advance=1, info=f"loss {sums['loss'] / n:.5f}")
            if stop.hit:
                break
    except KeyboardInterrupt:  # raised past the SIGINT flag (e.g. by the data loader): the same as Ctrl-C
        stop.hit = True
    if stop.hit:
        r.save_checkpoint(r.epoch)
        raise TrainInterrupted(f"interrupted: checkpoint saved in {r.checkpoint_path}; continue with --resume {r.out}")
    return sums, n


def _end_epoch(r: _Run, sums: dict[str, float], n: int, t0: float, meta_base: dict, log) -> None:  # noqa: ANN001
    """Validate, export last (and best) weights, save the checkpoint, log the epoch."""
    r.epoch += 1
    row = {"epoch": r.epoch, **{k: v / max(n, 1) for k, v in sums.items()}, "lr": r.opt.param_groups[0]["lr"]}
    if r.data.val_loader is not None:
        row.update(validate(r.served, r.data.val_loader, r.device, r.dtype))
        if r.ema is not None:  # the raw weights too, so the average's effect is measured
            row["val_nme_raw"] = validate(r.model, r.data.val_loader, r.device, r.dtype)["val_nme"]
    row["seconds"] = round(time.time() - t0, 1)
    score = row.get("val_nme", row["loss"])
    meta = {**meta_base, "epoch": r.epoch, **{k: round(v, 5) for k, v in row.items() if k.startswith("val")}}
    save_model(r.out / "last.safetensors", r.served, meta)
    if score < r.best:
        r.best = score
        save_model(r.out / "best.safetensors", r.served, meta)
    r.save_checkpoint(r.epoch)
    run.append_log(r.out / "log.csv", row)
    _plot_log(r.out / "log.csv", r.out / "curves.png")
    log("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, log=print,
          given: set[str] | None = None) -> Path:
    """Train (or resume) a run; returns the path of the best exported weights. `given`: the options the user set
    (a resume refuses those that contradict the run). Raises TrainInterrupted after saving the checkpoint when
    SIGINT or SIGTERM stops it."""
    cfg, state = _open_run(cfg, resume, given)
    out = Path(cfg.out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg)
    dtype = compute_dtype(cfg.precision, device)
    dtype_name = str(dtype).removeprefix("torch.")
    torch.manual_seed(cfg.seed)
    scheme = run_scheme(cfg)
    model, notes = build_model(cfg)
    teacher = load_teacher(cfg, scheme, device)
    for n in notes:
        log(n)
    model.to(device)
    per_source, val_samples = _read_faces(cfg, model, resume, log)
    log(f"networks in {dtype_name} (--precision {cfg.precision})")
    if teacher is not None:
        log(f"targets {cfg.distill:g} of the way from the annotations to {cfg.teacher}'s points")
    data = _loaders(cfg, model, per_source, val_samples, log)
    r = _Run(cfg, out, model, torch.optim.Adam(model.parameters(), lr=cfg.lr),
             moving_average(model, cfg.ema) if cfg.ema else None, teacher, data, device, dtype)
    out.mkdir(parents=True, exist_ok=True)
    if state is not None:
        r.restore(state)
        log(f"resuming {out} at epoch {r.epoch + 1}/{cfg.epochs} (best val NME {r.best:.3f} %)")
    else:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    warm = run.warmup_steps(cfg.warmup_steps, r.total_steps)
    if warm < cfg.warmup_steps:
        log(f"warm-up shortened to {warm} steps (a tenth of the run's {r.total_steps})")
    meta_base = {"train": asdict(cfg), "dtype": dtype_name, "samples": data.faces, "val_samples": len(val_samples)}

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with run.Interrupt() as stop, Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                           TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                           console=Console(stderr=True), disable=not progress) as bar:  # stdout: data
        while r.epoch < cfg.epochs:
            task = bar.add_task(f"epoch {r.epoch + 1}/{cfg.epochs}", total=len(data.loader), info="")
            t0 = time.time()
            sums, n = _train_epoch(r, stop, bar, task)
            _end_epoch(r, sums, n, t0, meta_base, log)
            bar.remove_task(task)
    return out / "best.safetensors"


def _plot_log(log_path: Path, png: Path) -> None:
    """The training curves as PNG: loss, and the validation NME when there is one."""
    from fflm.plot import line_plot

    rows = run.read_log(log_path)
    epochs = [float(r["epoch"]) for r in rows]
    series = {"train loss (x100)": [100 * float(r["loss"]) for r in rows]}
    if rows and rows[-1].get("val_nme"):
        series["val NME %"] = [float(r["val_nme"]) for r in rows]
        series["val NME % (global)"] = [float(r["val_nme_global"]) for r in rows]
    line_plot(png, epochs, series, "epoch", "", "training curves")
