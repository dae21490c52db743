"""`fflm batch --engine ray` against the local engine on this machine: `python benchmarks/ray_engine.py [--out F]`.

The first --images photos of `300w/val` (copied into a temporary folder) through `fflm batch DIR -o x.jsonl`
with the default settings, locally (--jobs 2) and with --engine ray (a Ray started for the run on this machine,
one actor per CPU), each as its own process, taking turns --rounds times. Reported: the img/s of the command's
summary (from the start of the run, Ray already up: the actors' model loading counts) and the wall time of the
whole command (Ray's start included), medians over the rounds; and whether the two outputs agree (largest
landmark difference).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "300w" / "val"


def run(folder: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "fflm", "batch", str(folder), "-o", str(out), *extra],
                       capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    rate = float(re.findall(r"\(([\d.]+) img/s\)", p.stderr)[-1])
    return rate, wall


def landmarks(path: Path) -> np.ndarray:
    return np.array([f["landmarks"] for line in path.read_text().splitlines() for f in json.loads(line)["faces"]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--machine", default="2-core Intel Xeon VM, no GPU, torch 2.13.0+cpu, contended (other jobs running)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    folder = tmp / "frames"
    folder.mkdir()
    for p in sorted(VAL.glob("*.jpg"))[: args.images]:
        shutil.copyfile(p, folder / p.name)
    engines = {"local": [], "ray": ["--engine", "ray"]}
    figures: dict[str, dict[str, list[float]]] = {k: {"img_per_s": [], "wall_s": []} for k in engines}
    for _ in range(args.rounds):
        for name, extra in engines.items():
            rate, wall = run(folder, tmp / f"{name}.jsonl", extra)
            figures[name]["img_per_s"].append(rate)
            figures[name]["wall_s"].append(round(wall, 1))
            print(f"{name:5s} {rate:5.2f} img/s, {wall:5.1f} s for the command", flush=True)
    diff = float(np.abs(landmarks(tmp / "local.jsonl") - landmarks(tmp / "ray.jsonl")).max())
    rows = [{"engine": k, "img_per_s": round(statistics.median(v["img_per_s"]), 2),
             "wall_s": round(statistics.median(v["wall_s"]), 1),
             "rounds": v} for k, v in figures.items()]
    result = {"command": "python benchmarks/ray_engine.py" + (f" --images {args.images}" if args.images != 48 else "")
                         + (f" --rounds {args.rounds}" if args.rounds != 2 else ""),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": args.machine,
              "note": f"{args.images} photos of 300w/val, default settings (auto precision, mirrored passes)",
              "figures": {"rows": rows, "max_landmark_difference_px": diff}}
    print(json.dumps(result["figures"], indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
