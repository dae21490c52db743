"""`fflm train`: train or fine-tune a landmark model on annotated faces."""

from __future__ import annotations

from pathlib import Path

import typer

from fflm.choices import LOSSES, VARIANTS, choice
from fflm.cli.app import Device, DeviceOpt, Precision, app, message, usage

EXAMPLES = """
Examples:

  fflm train --data 300w/train --val 300w/val --out runs/300w --epochs 30

  fflm train --data my_faces/ --scheme my_scheme.json --init 300w-68 --epochs 20

  fflm train --data 300w/train --data hires/,resolution=768 --init best.safetensors
      small and full-resolution faces, each at its own frame size

  fflm train --data 300w/train --data yaw30_60/,labels=../merlrav,jaw=0.3,repeat=2
      turned heads: 2D labels where present, the 3D-style jaw down-weighted

  fflm train --data 300w/train --init best.safetensors --augment rotate=6,blur=0      gentler augmentation

  fflm train --resume runs/300w                                                      continue after Ctrl-C
"""


Variant = choice("Variant", VARIANTS)
Loss = choice("Loss", LOSSES)


@app.command(epilog=EXAMPLES)
def train(
    data: list[str] = typer.Option(None, "--data", metavar="SOURCE", help="Training annotations: a 300-W style folder (with optional "
                                   ".vis files), a .csv or a .json file; repeat for several sources, each optionally "
                                   "followed by settings as PATH,KEY=VALUE,... (keys: resolution, repeat, jaw, hidden, distill, labels, exclude, only; "
                                   "e.g. hires/,resolution=768).",
                                   show_default=False),
    val: Path = typer.Option(None, "--val", help="Validation annotations (same formats); selects the best epoch."),
    scheme: str = typer.Option(None, "--scheme", help="Landmark scheme: 68 or a scheme JSON file (default: --init's "
                               "scheme, else 68).", show_default=False),
    variant: Variant = typer.Option(Variant.regular, "--variant", help="regular or light (depthwise-separable)."),
    width: int = typer.Option(None, "--width", min=4, max=512, help="Channels of every hourglass (default: 64, or "
                              "--init's; a different width re-initialises the networks).", show_default=False),
    stacks: int = typer.Option(None, "--stacks", min=1, max=8, help="Hourglasses stacked in the global network "
                               "(default: 1, or --init's; with --init the added ones start as copies of its last).",
                               show_default=False),
    resolution: int = typer.Option(256, "--resolution", min=64, max=4096, help="Training frame side in pixels."),
    proxy_size: int = typer.Option(None, "--proxy-size", min=64, max=4096, help="Side of the global stage's input, at "
                                   "most --resolution and a multiple of the global network's downsampling (64 for the "
                                   "shipped one; default: 256, or --init's).",
                                   show_default=False),
    crop_size: int = typer.Option(128, "--crop-size", min=16, max=512, help="Regional crop side in pixels."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Epochs (default 30). With --resume: extend the run to "
                               "this many (default: the run's own).", show_default=False),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Faces per step."),
    lr: float = typer.Option(1e-3, "--lr", min=0.0, help="Peak learning rate (Adam; warm-up then cosine to --lr-min)."),
    lr_min: float = typer.Option(1e-5, "--lr-min", min=0.0, help="Final learning rate."),
    warmup: int = typer.Option(200, "--warmup", min=0, help="Linear warm-up steps before the cosine decay."),
    loss: Loss = typer.Option(Loss.l2, "--loss", help="l2 (paper Eq. 1), l1, wing or ion (inter-ocular L2)."),
    init: Path = typer.Option(None, "--init", help="Start from these weights, a file or a shipped model's name (layers whose shape changed are re-initialised; "
                              "the file's shape model and mirror offset are kept).", dir_okay=False),
    refit: bool = typer.Option(False, "--refit", help="With --init: fit the shape model on this run's faces and start "
                               "the mirror offset from 0 instead of keeping the file's."),
    out: Path = typer.Option(Path("runs/fflm"), "--out", help="Run directory."),
    resume: Path = typer.Option(None, "--resume", help="Continue the run in this directory."),
    device: Device = DeviceOpt,
    precision: Precision = typer.Option(Precision.auto, "--precision", case_sensitive=False, help="The networks' "
                                        "arithmetic (weights stay float32): auto = bfloat16 mixed precision where the "
                                        "CPU (AVX512-BF16, AMX) or GPU computes it natively, else float32."),
    workers: int = typer.Option(0, "--workers", min=0, help="Data-loading processes."),
    threads: int = typer.Option(0, "--threads", min=0, help="Torch CPU threads (0: torch's default)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed."),
    max_val: int = typer.Option(0, "--max-val", min=0, help="Validate on at most this many faces (0: all)."),
    augment: str = typer.Option(None, "--augment", help="Augmentation: the defaults with NAME=VALUE pairs replaced "
                                "(comma-separated; names: scale, shift, rotate, flip, colour, blur, noise, jpeg), or "
                                "none. Example: rotate=6,blur=0.", show_default=False),
    ema: float = typer.Option(0.0, "--ema", min=0.0, max=0.9999, help="Validate and export an exponential moving "
                              "average of the weights with this decay per step (e.g. 0.998; 0: off)."),
    teacher: Path = typer.Option(None, "--teacher", help="Distil from these weights: the targets move --distill of the "
                                 "way from the annotations to the teacher's points on the same augmented frames.",
                                 dir_okay=False),
    distill: float = typer.Option(0.5, "--distill", min=0.0, max=1.0, help="With --teacher: how far the targets move "
                                  "towards its points (0: the annotations, 1: the teacher's)."),
) -> int:
    """Train the landmark model (paper Eq. 1 by default) and export the best epoch as .safetensors."""
    from dataclasses import asdict

    from fflm.cli.clickcompat import given_options
    from fflm.sources import Source
    from fflm.train.data import Augment
    from fflm.train.loop import TrainConfig, TrainInterrupted, train as run_train

    if resume is None and not data:
        raise usage("give --data (or --resume RUN_DIR)")
    if width is not None and width % 2:
        raise usage("--width must be even")
    try:
        sources = [Source.parse(d) for d in data or []]
    except ValueError as e:
        raise usage(f"--data {e}") from None
    from fflm.weights import resolve

    init = None if init is None else resolve(init)  # a file or a shipped model's name
    for p in [Path(s.path) for s in sources] + [val, init, teacher]:
        if p is not None and not p.exists():
            raise usage(f"no such file or directory: {p}")
    given = {{"warmup": "warmup_steps", "resume": "out"}.get(n, n) for n in given_options()}
    try:
        augmentation = asdict(Augment.parse(augment or ""))
    except ValueError as e:
        raise usage(f"--augment: {e}") from None
    cfg = TrainConfig(
        data=list(data or []), val=str(val) if val else None, out=str(resume or out), scheme=scheme,
        variant=variant.value, width=width, stacks=stacks, proxy_size=proxy_size, resolution=resolution,
        crop_size=crop_size, batch_size=batch_size,
        # a resumed run trains to max(--epochs, its own): 1 when --epochs is not given keeps its own
        epochs=epochs if epochs is not None else (1 if resume is not None else 30),
        lr=lr, lr_min=lr_min, warmup_steps=warmup, loss=loss.value, init=str(init) if init else None, refit=refit,
        device=device.value, precision=precision.value, seed=seed, workers=workers, threads=threads, max_val=max_val,
        ema=ema, augment=augmentation, teacher=str(teacher) if teacher else None, distill=distill,
    )
    try:
        best = run_train(cfg, resume=resume is not None, log=message, given=given)
    except TrainInterrupted as e:
        message(f"fflm: {e}")
        return 130
    message(f"fflm: best weights: {best}")
    return 0
