"""Speed and memory benchmark: `fflm bench`.

Portraits of 512 px to 8K on the long side are made by resizing the shipped sample and saved as JPEG.
Per resolution, in a fresh process each (a spawned worker of a process pool) (so peak memory is that resolution's alone): decode time,
detector time, landmark time per face, total in-process `predict` time, peak resident memory (and peak
CUDA memory on a GPU). Then a folder of 1080p frames: images/s of `batch` (the runner: worker threads each
taking a batch through the whole pipeline) against a loop of single-image `predict` calls in the same process,
and against a loop of `fflm detect FRAME` processes over the first 10 frames. Timings are
medians of repeated runs after a warm-up.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from fflm.weights import asset

SAMPLE = asset("astronaut.png")
SIZES = (512, 1024, 2048, 4096, 8192)


def make_portrait(long_side: int, path: Path, source: Path = SAMPLE) -> Path:
    """The sample portrait resized (Lanczos up, area down) to `long_side` x 0.75·long_side, saved as JPEG."""
    img = cv2.imread(str(source))
    h, w = img.shape[:2]
    # 4:3 landscape, like a camera frame: pad the square sample on both sides with its edge colours (a mirrored
    # border would hold half a mirrored face, which the detector rightly finds: one face is what is timed)
    img = cv2.copyMakeBorder(img, 0, 0, w // 6, w // 6, cv2.BORDER_REPLICATE)
    size = (long_side, round(long_side * img.shape[0] / img.shape[1]))
    interp = cv2.INTER_LANCZOS4 if long_side > img.shape[1] else cv2.INTER_AREA
    cv2.imwrite(str(path), cv2.resize(img, size, interpolation=interp), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure_one(path: Path, weights: str | None, device: str, repeat: int, detector: str, flip: bool = True,
                precision: str = "auto") -> dict:
    """All the per-image figures for one file (run in its own process)."""
    import torch

    from fflm.imageio import read_image
    from fflm.pipeline import Landmarker

    lm = Landmarker(weights, device=device, detector=detector, flip=flip, precision=precision)
    lm.predict(path)  # first, so the peak memory is that of one `predict` (the timings below hold extra copies)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    image = read_image(path)
    decode = _median_time(lambda: cv2.imread(str(path)), repeat)
    det_time = _median_time(lambda: lm.detector.detect(image), repeat)
    dets = lm.detector.detect(image)
    lm_time = _median_time(lambda: lm.landmarks([image], [dets]), repeat) / max(1, len(dets))
    lm.recentre = False  # the networks alone: global + regional, without the re-centring second global pass
    one_pass = _median_time(lambda: lm.landmarks([image], [dets]), repeat) / max(1, len(dets))
    lm.recentre = True
    total = _median_time(lambda: lm.predict(path), repeat)
    cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if lm.device.type == "cuda" else None
    return {"file": str(path), "threads": torch.get_num_threads(), "precision": lm.precision,
            "width": image.shape[1], "height": image.shape[0],
            "faces": len(dets),
            "decode_ms": 1000 * decode, "detector_ms": 1000 * det_time, "landmarks_ms_per_face": 1000 * lm_time,
            "one_pass_ms_per_face": 1000 * one_pass, "total_ms": 1000 * total, "total_over_decode": total / decode,
            "peak_rss_mb": peak, "decoded_mb": image.nbytes / 2**20, "cuda_peak_mb": cuda_peak}


def measure_dlib(path: Path, repeat: int) -> dict:
    """dlib's figures for the same file (its own process): HOG detector without upsampling, then the
    68-point shape predictor on each face; total = decode + both, as a user's script would run them."""
    from fflm.imageio import read_image
    from fflm.benchmarking.peers import DlibLandmarker

    dl = DlibLandmarker(upsample=0)

    def run() -> list:
        image = read_image(path)  # the same decode as fflm's
        return [dl.landmarks(image, b) for b in dl.detect(image)]

    run()  # first, so the peak memory is that of one run, as for fflm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    image = read_image(path)
    det_time = _median_time(lambda: dl.detect(image), repeat)
    boxes = dl.detect(image)
    lm_time = _median_time(lambda: [dl.landmarks(image, b) for b in boxes], repeat) / max(1, len(boxes))
    total = _median_time(run, repeat)
    return {"version": dl.version, "faces": len(boxes), "detector_ms": 1000 * det_time, "landmarks_ms_per_face": 1000 * lm_time,
            "total_ms": 1000 * total, "peak_rss_mb": peak}


def measure_batch(folder: Path, weights: str | None, device: str, detector: str, flip: bool = True,
                  precision: str = "auto", batch_size: int = 8, rounds: int = 4) -> dict:
    """Images/s over a folder: the batch runner against a loop of single-image predict calls. The folder is cut
    into `rounds` parts, each timed both ways in turn, so that a neighbour's load on a shared machine falls on
    both about equally."""
    from fflm import runner
    from fflm.imageio import list_images
    from fflm.pipeline import Landmarker

    lm = Landmarker(weights, device=device, detector=detector, flip=flip, precision=precision)
    files = list_images(folder)
    lm.predict(files[0])  # warm-up
    loop = batch = 0.0
    for part in (files[k::rounds] for k in range(rounds)):
        t = time.perf_counter()
        for f in part:
            lm.predict(f)
        loop += time.perf_counter() - t
        t = time.perf_counter()
        for _ in runner.run(lm, runner.file_items(part), None, batch_size=batch_size, workers=2):
            pass
        batch += time.perf_counter() - t
    n = len(files)
    return {"images": n, "loop_img_s": n / loop, "batch_img_s": n / batch, "speedup": loop / batch}


def measure_cli_loop(folder: Path, weights: str | None, device: str, detector: str, flip: bool = True,
                     precision: str = "auto", count: int = 10) -> dict:
    """Images/s of a shell-style loop of `fflm detect FRAME` processes over the first `count` frames: what a
    user who does not use `batch` gets (each run starts Python, loads the models and decodes its frame)."""
    files = sorted(folder.glob("*.jpg"))[:count]
    cmd = [sys.executable, "-m", "fflm", "detect", "--device", device, "--detector", detector,
           "--flip" if flip else "--no-flip", "--precision", precision] + (["--weights", weights] if weights else [])
    t = time.perf_counter()
    for f in files:
        subprocess.run([*cmd, str(f)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"cli_images": len(files), "cli_loop_img_s": len(files) / (time.perf_counter() - t)}


def make_frames(folder: Path, count: int = 200, size: tuple[int, int] = (1920, 1080)) -> Path:
    """`count` 1080p JPEG frames: a slow pan and zoom over the sample portrait."""
    folder.mkdir(parents=True, exist_ok=True)
    src = cv2.imread(str(SAMPLE))
    w, h = size
    base = cv2.resize(src, (h, h), interpolation=cv2.INTER_LANCZOS4)
    canvas = cv2.copyMakeBorder(base, 0, 0, (w - h) // 2, w - h - (w - h) // 2, cv2.BORDER_REFLECT)
    for i in range(count):
        t = i / max(1, count - 1)
        zoom = 1.0 + 0.3 * t
        m = cv2.getRotationMatrix2D((w / 2 + 80 * np.sin(6 * t), h / 2), 3 * np.sin(4 * t), zoom)
        frame = cv2.warpAffine(canvas, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(folder / f"frame_{i:04d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def in_fresh_process(fn, *args):  # noqa: ANN001,ANN002,ANN201
    """`fn(*args)` in a newly spawned process of its own (nothing of this one's memory or threads is inherited, so
    its peak memory is that measurement's alone); its exceptions are raised here."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def run_bench(weights: str | None = None, device: str = "auto", sizes: tuple[int, ...] = SIZES, repeat: int = 5,
              frames: int = 200, detector: str = "yunet", workdir: Path | None = None, dlib: bool = True,
              flip: bool = True, precision: str = "auto") -> dict:
    """The whole benchmark; returns the figures (printing is the caller's). dlib's figures are added when
    it is installed (fflm.benchmarking.peers) and `dlib` is true."""
    import torch

    work = Path(workdir or tempfile.mkdtemp(prefix="fflm-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    from fflm.benchmarking.peers import dlib_available

    rows, dlib_rows = [], []
    for s in sizes:
        p = make_portrait(s, work / f"portrait_{s}.jpg")
        rows.append(in_fresh_process(measure_one, p, weights, device, repeat, detector, flip, precision))
        if dlib and dlib_available():
            dlib_rows.append({**in_fresh_process(measure_dlib, p, repeat), "width": rows[-1]["width"],
                              "height": rows[-1]["height"], "fflm_total_ms": rows[-1]["total_ms"]})
    batch = None
    if frames:
        folder = work / "frames_1080p"
        if len(list(folder.glob("*.jpg"))) != frames:
            make_frames(folder, frames)
        batch = {**in_fresh_process(measure_batch, folder, weights, device, detector, flip, precision),
                 **measure_cli_loop(folder, weights, device, detector, flip, precision, min(10, frames))}
    return {
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": rows[0]["threads"] if rows else torch.get_num_threads(),
                    "device": device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"),
                    "opencv": cv2.__version__, "detector": detector, "flip": flip,
                    "precision": rows[0]["precision"] if rows else precision},
        "images": rows,
        "dlib": dlib_rows,
        "batch": batch,
    }


def print_report(report: dict, con=None) -> None:
    from rich.console import Console
    from rich.table import Table

    m = report["machine"]
    con = con or Console(highlight=False)
    t = Table(title=f"fflm bench: {m['device']}, {m['cpus']} CPUs, {m['threads']} torch threads, torch {m['torch']}, "
                    f"OpenCV {m['opencv']}, detector {m['detector']}, flip {'on' if m['flip'] else 'off'}, "
                    f"{m['precision']}",
              title_justify="left")
    for c in ("image", "faces", "decode ms", "detector ms", "landmarks ms/face", "1 pass ms/face", "total ms",
              "total/decode", "peak RSS MB", "decoded MB", "CUDA peak MB"):
        t.add_column(c, justify="right")
    for r in report["images"]:
        t.add_row(f"{r['width']}×{r['height']}", str(r["faces"]), f"{r['decode_ms']:.1f}", f"{r['detector_ms']:.1f}",
                  f"{r['landmarks_ms_per_face']:.1f}", f"{r['one_pass_ms_per_face']:.1f}", f"{r['total_ms']:.1f}",
                  f"{r['total_over_decode']:.2f}",
                  f"{r['peak_rss_mb']:.0f}", f"{r['decoded_mb']:.0f}",
                  "-" if r["cuda_peak_mb"] is None else f"{r['cuda_peak_mb']:.0f}")
    con.print(t)
    if report.get("dlib"):
        dt = Table(title=f"dlib {report['dlib'][0]['version']} on the same images: HOG detector (no upsampling) + "
                         "68-point shape predictor",
                   title_justify="left")
        for c in ("image", "faces", "detector ms", "landmarks ms/face", "total ms", "peak RSS MB", "fflm total / dlib"):
            dt.add_column(c, justify="right")
        for r in report["dlib"]:
            dt.add_row(f"{r['width']}×{r['height']}", str(r["faces"]), f"{r['detector_ms']:.1f}",
                       f"{r['landmarks_ms_per_face']:.1f}", f"{r['total_ms']:.1f}", f"{r['peak_rss_mb']:.0f}",
                       f"{r['fflm_total_ms'] / r['total_ms']:.2f}")
        con.print(dt)
    b = report.get("batch")
    if b:
        bt = Table(title=f"{b['images']} frames of 1920×1080", title_justify="left")
        for c in ("batch img/s", "loop of predict img/s", "batch / predict loop",
                  f"loop of `fflm detect` img/s (first {b['cli_images']})", "batch / detect loop"):
            bt.add_column(c, justify="right")
        bt.add_row(f"{b['batch_img_s']:.2f}", f"{b['loop_img_s']:.2f}", f"{b['speedup']:.2f}×",
                   f"{b['cli_loop_img_s']:.2f}", f"{b['batch_img_s'] / b['cli_loop_img_s']:.1f}×")
        con.print(bt)
