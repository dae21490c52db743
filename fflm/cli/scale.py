"""`fflm batch --engine ray`: the options and the glue to fflm.distributed (the fflm[ray] extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import typer

from fflm.choices import ENGINES, choice
from fflm.cli.app import usage

Engine = choice("Engine", ENGINES)


EngineOpt = typer.Option(Engine.local, "--engine", metavar="NAME", case_sensitive=False,
                         help="local (this process, --jobs threads) or ray: actors on a Ray cluster, a Landmarker "
                         "each (a folder of images; the fflm[ray] extra; see docs/scale.md).")
AddressOpt = typer.Option(None, "--address", metavar="ADDRESS", help="--engine ray: the cluster, auto (the one "
                          "'ray start' runs on this machine), ray://HOST:PORT or HOST:PORT; default: a Ray started "
                          "for this run on this machine.")
NumWorkersOpt = typer.Option(None, "--num-workers", min=1, metavar="N", help="--engine ray: actors (default: one "
                             "per CPU of the cluster, or per GPU share).")
GpusOpt = typer.Option(0.0, "--gpus-per-worker", min=0.0, metavar="F", help="--engine ray: GPUs per actor (0.5: "
                       "two share one); each then runs on CUDA with batches of 32.")


def check_engine(engine: Engine, video: bool, overlay: Path | None, address: str | None, num_workers: int | None,
                 gpus: float) -> None:
    """Usage errors of the engine options, and for ray joining the cluster (ConnectionError: exit 1), before any
    work."""
    if engine == "local":
        if address is not None or num_workers is not None or gpus:
            raise usage("--address, --num-workers and --gpus-per-worker need --engine ray")
        return
    if video:
        raise usage("--engine ray takes a folder of images (a video's frames are read in order by one process)")
    if overlay is not None:
        raise usage("--engine ray writes no overlays: run 'fflm batch' locally for them")
    from fflm import distributed

    distributed.connect(address)


def ray_results(source: Path, recursive: bool, opts, boxes: dict | None, batch_size: int,  # noqa: ANN001
                num_workers: int | None, gpus: float) -> Iterator:
    """The folder's results from the Ray cluster, in order (see fflm.distributed.results); each actor builds its
    Landmarker from the command's options `opts` (a LandmarkerOptions)."""
    from fflm import distributed
    from fflm.imageio import list_images

    batch = batch_size if gpus == 0 else max(batch_size, distributed.GPU_BATCH)
    return distributed.results(list_images(source, recursive), make=opts.landmarker, boxes=boxes,
                               num_workers=num_workers, gpus_per_worker=gpus, batch_size=batch)
