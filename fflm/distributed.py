"""Landmarks over a Ray cluster (the `fflm[ray]` extra): `landmarks(paths) -> ray.data.Dataset`.

The image files are read with Ray Data (`read_binary_files`, so any path Ray reads: a shared folder, s3://...)
and decoded, detected and landmarked by a pool of actors, each holding one Landmarker (`map_batches` with an
actor class). A row per image: `path`, `width`, `height`, `error` (null unless the file could not be read: the
run goes on), and `faces`, the image's faces as JSON text (`box`, `score`, `landmarks`, `landmark_scores`, at
full precision: fflm's JSON output rounds them). An actor that dies is restarted and its batches run again
(Ray's task retries), so no image is lost. `results()` turns the rows back into fflm.outputs.ImageResult for
the writers of `fflm batch`, in input order.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from fflm.backends import require

CPU_BATCH, GPU_BATCH = 8, 32  # images per actor call: a CPU worker keeps its batch small, a GPU fills itself
CONNECT_TIMEOUT_S = 10.0
# an actor asks for 0.9 CPU and a read task for 0.05: with whole CPUs, actors on every CPU leave Ray Data's
# reads no budget and the run waits forever; reading bytes takes little CPU (decoding is the actors')
READ_CPUS, WORKER_CPUS = 0.05, 0.9


def _ray():  # noqa: ANN202
    return require("ray", "ray", "--engine ray")


def connect(address: str | None = None, timeout: float = CONNECT_TIMEOUT_S, **init_kwargs) -> None:
    """Join the cluster at `address` (`auto`: the one started on this machine with `ray start`; `ray://HOST:PORT`
    or `HOST:PORT`), or start a new local one when None (even where `ray start` runs one); nothing when Ray is
    already initialised. An address that does not answer within `timeout` seconds raises ConnectionError (Ray
    itself would keep trying)."""
    ray = _ray()
    if ray.is_initialized():
        return
    if address not in (None, "auto", "local"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
        except (OSError, ValueError) as e:
            raise ConnectionError(f"no Ray cluster answers at {address} within {timeout:g} s ({e})") from None
    try:
        ray.init(address=address or "local", logging_level="ERROR", log_to_driver=False, **init_kwargs)
    except ConnectionError as e:
        raise ConnectionError(f"cannot join the Ray cluster at {address}: {str(e).splitlines()[0]}") from None


class LandmarkWorker:
    """A Ray Data actor: one Landmarker, made once by `make()`, over batches of encoded images."""

    def __init__(self, make: Callable, boxes: dict | None, threads: int) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.landmarker = make()
        self.boxes = boxes

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from fflm.imageio import ImageError, decode_file_bytes

        out: dict[str, list] = {"path": [], "width": [], "height": [], "error": [], "faces": []}
        held = []

        def add(path: str, width: int, height: int, error: str | None, faces: str | None) -> None:
            for key, value in zip(out, (path, width, height, error, faces)):
                out[key].append(value)

        for path, data in zip(batch["path"], batch["bytes"]):
            path = str(path)
            try:
                image = decode_file_bytes(data, path)
                given = None if self.boxes is None else self.boxes.get(Path(path).name)
                dets = self.landmarker.detections(image, given, label=path)
            except (ImageError, ValueError, OSError) as e:
                add(path, 0, 0, str(e), "[]")
                continue
            add(path, image.shape[1], image.shape[0], None, None)
            held.append((len(out["path"]) - 1, image, dets))
        if held:
            faces = self.landmarker.landmarks([im for _, im, _ in held], [d for _, _, d in held])
            for (row, _, _), fs in zip(held, faces):
                out["faces"][row] = json.dumps([{"box": f.box.tolist(), "score": float(f.score),
                                                 "landmarks": np.asarray(f.landmarks).tolist(),
                                                 "landmark_scores": np.asarray(f.landmark_scores).tolist()}
                                                for f in fs])
        return out


def landmarks(paths_or_dataset, make: Callable | None = None, *, boxes: dict | None = None,  # noqa: ANN001
              num_workers: int | None = None, gpus_per_worker: float = 0.0, batch_size: int | None = None,
              **landmarker_kwargs):  # noqa: ANN201 - a ray.data.Dataset
    """The faces of every image, as a Ray Dataset (see the module's description of its rows).

    `paths_or_dataset`: image paths (files or folders Ray can read), or a Dataset with `path` and `bytes` columns
    (`ray.data.read_binary_files(..., include_paths=True)`). `make`: a function that builds each actor's Landmarker
    (default `Landmarker(**landmarker_kwargs)`, e.g. `weights=`, `flip=`, `precision=`, `detector=`). `boxes`: face
    boxes by file name, as `fflm batch --boxes`. `num_workers`: actors (default: as many as the cluster's CPUs, one
    fewer for a given Dataset, or GPUs / gpus_per_worker; actors on every CPU leave none to reads that ask for a
    whole one, and the run waits); `gpus_per_worker` > 0 puts each on a GPU share with batches of 32 instead of 8.
    Connects to a local Ray when none is initialised (see `connect`)."""
    ray = _ray()
    connect()
    if make is None:
        make = _factory(gpus_per_worker, landmarker_kwargs)
    elif landmarker_kwargs:
        raise TypeError("give either make or Landmarker keyword arguments")
    given = isinstance(paths_or_dataset, ray.data.Dataset)
    if given:
        ds = paths_or_dataset
    else:
        ds = ray.data.read_binary_files([str(p) for p in paths_or_dataset], include_paths=True, num_cpus=READ_CPUS)
    resources = ray.cluster_resources()
    if num_workers is None:  # a given Dataset's reads may want a whole CPU: one is left to them
        num_workers = (int(resources.get("GPU", 0) / gpus_per_worker) if gpus_per_worker > 0
                       else int(resources.get("CPU", 1)) - given)
    num_workers = max(1, num_workers)
    return ds.map_batches(LandmarkWorker, fn_constructor_kwargs={"make": make, "boxes": boxes,
                                                                 "threads": 0 if gpus_per_worker > 0 else 1},
                          batch_size=batch_size or (GPU_BATCH if gpus_per_worker > 0 else CPU_BATCH),
                          compute=ray.data.ActorPoolStrategy(size=num_workers), num_cpus=WORKER_CPUS,
                          num_gpus=gpus_per_worker or None, batch_format="numpy")  # Ray Data's actors: restarts and
    # task retries without limit (its defaults, max_restarts=-1, max_task_retries=-1)


def _factory(gpus: float, kwargs: dict) -> Callable:
    def make():  # noqa: ANN202
        from fflm.pipeline import Landmarker

        return Landmarker(**{"device": "cuda" if gpus > 0 else "cpu", **kwargs})

    return make


def results(paths: Iterable[str | Path], **kwargs) -> Iterator:
    """`landmarks(paths, **kwargs)` as fflm.outputs.ImageResult, one per path, in the order of `paths` (each
    labelled by its path as given)."""
    from fflm.outputs import ImageResult
    from fflm.pipeline import Face

    ray = _ray()
    paths = [str(p) for p in paths]
    connect()
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    given = {os.path.abspath(p): p for p in paths}
    ds = landmarks(paths, **kwargs)
    for row in ds.iter_rows():
        read = str(row["path"])
        path = given.get(os.path.abspath(read), read)
        error = None if row["error"] is None else str(row["error"]).replace(read, path)
        r = ImageResult(path, int(row["width"]), int(row["height"]), error=error)
        if r.error is None:
            r.faces = [Face(np.array(f["box"]), f["score"], np.array(f["landmarks"]), np.array(f["landmark_scores"]))
                       for f in json.loads(row["faces"])]
        yield r
