"""Where the time of one `fflm detect` goes, stage by stage: `python benchmarks/stages.py [IMAGES...]`.

Each stage is timed by wrapping the function or module that does it (nothing in fflm changes): decode, detector,
proxy and crop cutting, the global and regional networks, the soft-argmax heads, the shape model; "other" is the
rest of `predict` (Python, geometry, tensor glue). Default images: 40 crops of `300w/val`. Medians over images of
the per-image sums, after a warm-up; `--torch-profiler` also prints torch.profiler's top operators.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

import fflm.pipeline as pipeline
from fflm.imageio import read_image

VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "300w" / "val"


class StageClock:
    """Seconds spent per named stage since the last `reset` (nested stages are not subtracted: none nest here)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    def reset(self) -> dict[str, float]:
        spent, self.spent = dict(self.spent), defaultdict(float)
        return spent

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[name] += time.perf_counter() - t
        return timed

    def hook(self, name: str, module: torch.nn.Module) -> None:
        module.forward = self.wrap(name, module.forward)


def instrument(lm: pipeline.Landmarker, clock: StageClock) -> None:
    """Time every stage of `lm` into `clock`."""
    pipeline.crop_u8 = clock.wrap("proxy and crops", pipeline.crop_u8)
    pipeline.regularise = clock.wrap("shape model", pipeline.regularise)
    pipeline.read_image = clock.wrap("decode", pipeline.read_image)
    lm.detector.detect = clock.wrap("detector", lm.detector.detect)
    clock.hook("global network", lm.model.global_net)
    for net in lm.model.stacked_regions:
        clock.hook("regional network", net)
    for head in [lm.model.global_head, *(h for hs in lm.model.regional_heads for h in hs)]:
        clock.hook("soft-argmax", head)


@contextmanager
def threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def profile(paths: list[Path], lm: pipeline.Landmarker, clock: StageClock) -> dict[str, tuple[float, float]]:
    """Median and mean ms per image of each stage, of `predict` in all, and of what the stages leave ("other")
    (the mean counts the photos that take the rare paths: other orientations, the lost-face search)."""
    lm.predict(paths[0])  # warm-up
    clock.reset()
    rows: list[dict[str, float]] = []
    for p in paths:
        t = time.perf_counter()
        faces = lm.predict(p)
        total = time.perf_counter() - t
        spent = clock.reset()
        spent["other"] = total - sum(spent.values())
        spent["predict"] = total
        spent["faces"] = len(faces)
        rows.append(spent)
    names = sorted({k for r in rows for k in r}, key=lambda k: (k in ("other", "predict", "faces"), k))
    scale = {k: 1 if k == "faces" else 1000 for k in names}
    return {k: (statistics.median(r.get(k, 0.0) for r in rows) * scale[k],
                statistics.fmean(r.get(k, 0.0) for r in rows) * scale[k]) for k in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*", type=Path)
    ap.add_argument("--count", type=int, default=40, help="val crops when no images are given")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--no-flip", action="store_true")
    ap.add_argument("--preset", default="default", help="a Landmarker preset (default, fast)")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--onnx-dir", type=Path, help="the export --backend onnxruntime or openvino runs")
    ap.add_argument("--torch-profiler", action="store_true")
    args = ap.parse_args()
    paths = args.images or sorted(VAL.glob("*.jpg"))[: args.count]
    with threads(args.threads):
        lm = pipeline.Landmarker(precision=args.precision, preset=args.preset, backend=args.backend,
                                 onnx_dir=args.onnx_dir, **({"flip": False} if args.no_flip else {}))
        clock = StageClock()
        instrument(lm, clock)
        result = profile(paths, lm, clock)
        print(f"{len(paths)} images, {args.threads} threads, precision {lm.precision}, "
              f"preset {args.preset}, backend {args.backend}, flip {lm.flip}, detector {type(lm.detector).__name__}")
        print(f"{'stage':<20} {'ms/image, median':>17} {'mean':>8}")
        for k, (median, mean) in result.items():
            print(f"{k:<20} {median:>17.2f} {mean:>8.2f}")
        if args.torch_profiler:
            from torch.profiler import ProfilerActivity, profile as tprofile

            with tprofile(activities=[ProfilerActivity.CPU]) as prof:
                for p in paths[:10]:
                    lm.predict(read_image(p))
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
