"""The figure tables of the README, docs/ and the model cards, generated from benchmarks/results/*.json.

    python benchmarks/tables.py            rewrite every table in place
    python benchmarks/tables.py --check    exit 1 and name the files whose tables differ from the results

Each results file is one measurement run: `command`, `date`, `machine`, an optional `note`, and `figures` (for
`fflm bench --record DIR` files, the report `fflm bench --json` prints). In docs/ and fflm/assets/ a table stands
between `<!-- table:NAME -->` and `<!-- /table -->`; the README has no comments, so there a table is found by
its header row and ends at the next blank line. Each table is followed by a line naming its source runs. To
publish a new run, record it, point its entry in RUNS at the new file and run this script.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: the run each table shows, by the key the tables use: a results file's stem
RUNS = {
    "bench": "2026-12-03-intel-xeon-2cpu-bench",
    "bench-no-flip": "2026-12-03-intel-xeon-2cpu-bench-no-flip",
    "bench-bfloat16": "2026-12-01-amd-epyc-2cpu-bench-bfloat16",
    "bench-float32": "2026-12-01-amd-epyc-2cpu-bench-float32",
    "landmark-stage": "2026-12-01-amd-epyc-2cpu-landmark-stage",
    "speed-accuracy": "2026-12-01-amd-epyc-2cpu-speed-accuracy",
    "eval-300w-val": "2026-12-04-amd-epyc-2cpu-eval-300w-val-2",
    "detector": "2026-12-01-amd-epyc-2cpu-detector",
    "detector-timing": "2026-12-03-intel-xeon-2cpu-detector-timing",
    "train-step": "2026-12-01-amd-epyc-2cpu-train-step",
    "landmarks-300w": "2026-12-04-amd-epyc-2cpu-landmarks-300w-2",
    "dlib-retrained": "2026-12-02-amd-epyc-2cpu-landmarks-300w",
    "resolution": "2026-12-04-amd-epyc-2cpu-resolution-2",
    "peers": "2026-12-04-amd-epyc-2cpu-speed-2",
    "video": "2026-12-03-intel-xeon-2cpu-video",
}
MARKER = re.compile(r"(<!-- table:([a-z0-9-]+) -->\n)(.*?)(<!-- /table -->)", re.S)
REGIONS = ("jaw", "brows", "eyes", "nose", "mouth")


def load(key: str) -> dict:
    """The results file RUNS names for `key`."""
    return json.loads((RESULTS / f"{RUNS[key]}.json").read_text())


def fmt(value: object, spec: str = "{}") -> str:
    """A figure as shown in a table; a missing one is a dash."""
    return "—" if value is None else spec.format(value)


def grid(header: list[str], rows: list[list[str]], align: str) -> str:
    """A Markdown table; align: one l/r per column."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def source(*runs: dict) -> str:
    """The line naming the runs a table comes from: command and date of each, and the machine."""
    sources = "; ".join(f"{_code(r['command'])}, {r['date']}" for r in runs)
    return f"Source: {sources}; {', '.join(sorted({r['machine'] for r in runs}))}.\n"


def markdown(header: list[str], rows: list[list[str]], align: str, *runs: dict) -> str:
    """A Markdown table and its source line."""
    return grid(header, rows, align) + "\n" + source(*runs)


def _code(command: str) -> str:
    """A plain command in backticks; one that already marks its code is left as it is."""
    return command if "`" in command else f"`{command}`"


def _size(r: dict) -> str:
    return f"{r['width']}×{r['height']}"


def models() -> str:
    ev, ls = (load(s) for s in ("eval-300w-val", "landmark-stage"))
    nme = {r["weights"]: r["mean"] for r in ev["figures"]["rows"]
           if r["setting"].startswith("default") and r["boxes"] == "landmarks"}
    ms = {r["weights"]: r["ms_per_face"] for r in ls["figures"]["rows"] if r["precision"] == "bfloat16"}
    lic = {"fflm-300w-68": "non-commercial research (300-W, AFLW, MERL-RAV)",
           "fflm-300w-68-stacks2": "non-commercial research (300-W)"}
    rows = [[f"`{name}` (default)" if i == 0 else f"`{name}`", "68", fmt(nme[name], "{:.3f} %"), f"{ms[name]} per face",
             lic[name], "[card](fflm/assets/MODEL_CARD.md)"] for i, name in enumerate(lic)]
    return markdown(["file", "points", "NME, 300-W val", "ms", "licence", "card"], rows, "lrrrll", ev, ls)


def accuracy_dlib() -> str:
    run = load("landmarks-300w")
    rows = [[r["tool"], f"{r['found']} / {r['faces']}", fmt(r["mean"], "{:.2f} %"), fmt(r["median"], "{:.2f} %"),
             fmt(r["fr_008"], "{:.2f} %"), fmt(r["auc_008"], "{:.1f}"), fmt(r["regions"]["jaw"], "{:.2f}")]
            for r in run["figures"]["rows"]]
    return markdown(["300-W val, each tool's own boxes", "faces found", "NME", "median", "FR@0.08", "AUC@0.08",
                     "jaw"], rows, "lrrrrrr", run)


def resolution() -> str:
    run = load("resolution")
    fig = run["figures"]
    sizes = fig["sizes"]
    rows = []
    for tool, by_size in fig["tools"].items():
        name = tool.removesuffix(".safetensors")
        name = f"fflm `{name[5:]}`" if name.startswith("fflm ") else f"{name}, its HOG box"
        for points, what in (("68", "68 points"), ("51", "the 51 refined points")):
            cells = [fmt(by_size[s][f"nme_{points}"], "{:.3f} %") for s in sizes]
            missed = max(fig["faces"] - by_size[s]["found"] for s in sizes)
            rows.append([f"{name}, {what}" + (f" ({missed} faces missed at most)" if missed else ""), *cells])
    header = [f"300-W hires ({fig['faces']} faces), inter-ocular NME, crop side"] + [
        s if s == "native" else f"{s} px" for s in sizes]
    return markdown(header, rows, "l" + "r" * len(sizes), run)


def accuracy_regions() -> str:
    run = load("dlib-retrained")
    rows = [[r["tool"], str(r["found"]), fmt(r["mean"], "{:.2f} %"), fmt(r["median"], "{:.2f} %"),
             fmt(r["fr_008"], "{:.2f} %")] + [fmt(r["regions"][k], "{:.2f}") for k in REGIONS]
            for r in run["figures"]["rows"]]
    return markdown(["300-W val, inter-ocular NME", "found", "mean", "median", "FR@0.08", *REGIONS], rows,
                    "lrrrrrrrrr", run)


def eval_300w() -> str:
    run = load("eval-300w-val")
    rows = [[r["setting"], fmt(r["mean"], "{:.3f} %"), fmt(r["median"], "{:.2f} %"), fmt(r["fr_008"], "{:.2f} %"),
             fmt(r["auc_008"], "{:.1f}"), fmt(r["fr_010"], "{:.2f} %"), fmt(r["auc_010"], "{:.1f}")]
            for r in run["figures"]["rows"] if r["weights"] == "fflm-300w-68" and r["boxes"] == "landmarks"]
    return markdown(["`fflm-300w-68` on 300-W val", "mean", "median", "FR@0.08", "AUC@0.08", "FR@0.10", "AUC@0.10"],
                    rows, "lrrrrrr", run)


def speed() -> str:
    run = load("bench")
    dl = {(r["width"], r["height"]): r for r in run["figures"]["dlib"]}
    rows = [[_size(r), fmt(r["landmarks_ms_per_face"], "{:.1f}"), fmt(r["total_ms"], "{:,.0f}"),
             fmt(r["peak_rss_mb"], "{:.0f}"), fmt(dl.get((r["width"], r["height"]), {}).get("total_ms"), "{:,.0f}"),
             fmt(dl.get((r["width"], r["height"]), {}).get("peak_rss_mb"), "{:.0f}")] for r in run["figures"]["images"]]
    return markdown(["photo, one face", "fflm landmarks ms/face", "fflm total ms", "fflm peak MB", "dlib total ms",
                     "dlib peak MB"], rows, "lrrrrr", run)


def bench() -> str:
    run = load("bench")
    dl = {(r["width"], r["height"]): r for r in run["figures"]["dlib"]}
    rows = []
    for r in run["figures"]["images"]:
        d = dl.get((r["width"], r["height"]), {})
        rows.append([_size(r), fmt(r["decode_ms"], "{:.1f}"), fmt(r["detector_ms"], "{:.1f}"),
                     fmt(r["landmarks_ms_per_face"], "{:.1f}"), fmt(r["one_pass_ms_per_face"], "{:.1f}"),
                     fmt(r["total_ms"], "{:,.0f}"), fmt(r["total_over_decode"], "{:.3g}"), fmt(r["peak_rss_mb"], "{:.0f}"),
                     fmt(d.get("total_ms"), "{:,.0f}"), fmt(d.get("peak_rss_mb"), "{:.0f}")])
    return markdown(["image", "decode ms", "detector ms", "landmarks ms/face", "1 pass ms/face", "fflm total ms",
                     "total / decode", "peak RSS MB", "dlib total ms", "dlib peak RSS MB"], rows, "lrrrrrrrrr", run)


def bench_batch() -> str:
    runs = [load(s) for s in ("bench", "bench-no-flip")]
    rows = []
    for run in runs:
        b = run["figures"]["batch"]
        rows.append(["default" if run["figures"]["machine"]["flip"] else "`--no-flip`", fmt(b["batch_img_s"], "{:.1f}"),
                     fmt(b["loop_img_s"], "{:.1f}"), fmt(b["speedup"], "{:.2f}×"), fmt(b["cli_loop_img_s"], "{:.2f}"),
                     f"{b['batch_img_s'] / b['cli_loop_img_s']:.0f}×"])
    return markdown(["setting", "`fflm batch` img/s", "loop of `predict` img/s", "batch / predict loop",
                     "loop of `fflm detect` img/s", "batch / detect loop"], rows, "lrrrrr", *runs)


def precision() -> str:
    runs = [load(s) for s in ("bench-bfloat16", "bench-float32")]
    header = ["landmark stage ms/face (1 pass)"] + [_size(r) for r in runs[0]["figures"]["images"]]
    rows = [[run["figures"]["machine"]["precision"]] + [f"{r['landmarks_ms_per_face']:.1f} ({r['one_pass_ms_per_face']:.1f})"
                                                      for r in run["figures"]["images"]]
            + [fmt(run["figures"]["batch"]["batch_img_s"], "{:.1f} img/s")] for run in runs]
    return markdown(header + ["200 frames 1080p, `batch`"], rows, "l" + "r" * len(header), *runs)


def landmark_stage() -> str:
    run = load("landmark-stage")
    rows = [[f"`{r['weights']}`", r["precision"], fmt(r["ms_per_face"])] for r in run["figures"]["rows"]]
    return markdown(["weights", "precision", "landmark stage ms/face, 4K portrait"], rows, "llr", run)


def speed_accuracy() -> str:
    run = load("speed-accuracy")
    rows = [[r["setting"], fmt(r["ms_per_face"], "{:.1f}"), fmt(r["nme_landmark_boxes"], "{:.2f} %"),
             fmt(r["nme_detector_boxes"], "{:.2f} %")] for r in run["figures"]["rows"]]
    return markdown(["setting", "landmark stage ms/face", "NME, landmark boxes", "NME, detector boxes"], rows, "lrrr",
                    run)


def peers() -> str:
    run = load("peers")
    rows = [[name, fmt(r["ms_per_image"], "{:.1f}"), f"{r['found']} / {r['faces']}", fmt(r["nme"], "{:.3f} %"),
             fmt(r["nme_median"], "{:.2f} %")] for name, r in run["figures"].items()]
    return markdown(["tool", "ms per image", "faces found", "NME", "median"], rows, "lrrrr", run)


def detector_speed() -> str:
    run = load("detector-timing")
    rows = [[r["detector"], r["input"], fmt(r["wall_ms"], "{:.1f}"),
             fmt(r.get("range") and "{:.1f}-{:.1f}".format(*r["range"])), fmt(r.get("cpu_ms"), "{:.1f}")]
            for r in run["figures"]["rows"]]
    return markdown(["detector", "input", "ms, median", "range of the rounds", "process CPU ms"], rows, "llrrr", run)


def train_step() -> str:
    run = load("train-step")
    rows = [[str(r["threads"]), fmt(r["bfloat16_ms"]), fmt(r["float32_ms"]), f"{r['float32_ms'] / r['bfloat16_ms']:.2f}×"]
            for r in run["figures"]["rows"]]
    return markdown(["threads", "bfloat16 ms/step", "float32 ms/step", "float32 / bfloat16"], rows, "rrrr", run)


def detector() -> str:
    """The built-in detector against YuNet from one run: scene photos, the 8K mosaic, 300-W."""
    run = load("detector")
    f = run["figures"]
    scenes = grid(["221 held-out scene photos, IoU 0.5", "recall 20-32 px", "recall ≥ 20", "recall ≥ 32", "recall ≥ 64",
                   "precision"], [[r["detector"]] + [fmt(r[k], "{:.3f}") for k in ("r20_32", "r20", "r32", "r64",
                                                                                   "precision")] for r in f["scenes"]],
                  "lrrrrr")
    mosaic = grid(["8K mosaic, 118 faces ≥ 40 px", "recall ≥ 40", "recall ≥ 60", "precision", "seconds"],
                  [[r["detector"]] + [fmt(r[k], "{:.3f}") for k in ("r40", "r60", "precision")]
                   + [fmt(r["seconds"], "{:.2f}")] for r in f["mosaic"]], "lrrrr")
    ev = load("eval-300w-val")  # the landmark figures: the shipped landmark file on each detector's boxes
    on = {r["boxes"]: r["mean"] for r in ev["figures"]["rows"] if r["weights"] == "fflm-300w-68"
          and r["setting"].startswith("default")}
    w300 = grid(["300-W val (554 crops)", "found (IoU ≥ 0.5)", "NME, its boxes", "NME, boxes from landmarks"],
                [[r["detector"], fmt(r["found"], "{:.3f}"), fmt(on.get(r["detector"].lower()), "{:.3f} %"),
                  fmt(on["landmarks"], "{:.3f} %")] for r in f["w300"]], "lrrr")
    return "\n".join((scenes, mosaic, w300, source(run, ev)))


def _video_mode(label: str) -> str:
    """A benchmarks/video.py mode as the tables name it: "tracking+smooth, --no-flip" is
    "tracking + `--smooth`, `--no-flip`"."""
    mode, _, setting = label.partition(", ")
    name = {"per-frame": "per-frame detection", "tracking+smooth": "tracking + `--smooth`"}.get(mode, mode)
    return name + (f", `{setting}`" if setting else "")


VIDEO_CLIPS = {"frames.mp4": "frames.mp4 (720p, 7 fps, 35)",
               "frames_25fps_mp4v.mp4": "frames_25fps_mp4v.mp4 (720p, 125)",
               "longer_1080p.avi": "longer (1080p, 25 fps, 250)"}


def video_motion() -> str:
    run = load("video")
    m = run["figures"]["motion"]
    rows = [[_video_mode(k), *(fmt(m[kind][k][key], "{:.3f}") for kind in ("wobble", "pan")
                               for key in ("rms_px", "rms_iod_pct")), fmt(m["pan"][k]["lag_frames"], "{:.2f}")]
            for k in m["wobble"]]
    return markdown(["mode", "wobble px", "wobble % IOD", "pan px", "pan % IOD", "pan lag, frames"], rows, "lrrrrr",
                    run)


def video_samples() -> str:
    run = load("video")
    rows = []
    for clip, modes in run["figures"]["samples"].items():
        n = next(iter(modes.values()))["detector_runs"]  # the clip's frames: per-frame detection comes first
        for k, (label, r) in enumerate(modes.items()):
            rows.append([VIDEO_CLIPS.get(clip, clip) if k == 0 else "", _video_mode(label), fmt(r["fps"], "{:.2f}"),
                         fmt(r["speedup"], "{:.2f}"), str(r["detector_runs"]), fmt(r["global_passes"] / n, "{:.1f}"),
                         f"{r['missed']} / {r['truth_faces']}", str(r["false"]), str(r["id_switches"])])
    return markdown(["clip", "mode", "frames/s", "× per-frame", "detector runs", "global passes / frame",
                     "missed / truth faces", "false", "id switches"], rows, "llrrrrrrr", run)


def video_sweep() -> str:
    run = load("video")
    sweep = run["figures"]["sweep"]
    rows = [[n, fmt(r["fps"], "{:.2f}"), str(r["detector_runs"]), str(r["missed"]), str(r["false"]),
             str(r["id_switches"])] for n, r in sweep.items()]
    truth = next(iter(sweep.values()))["truth_faces"]
    return markdown(["N", "frames/s", "detector runs", f"missed / {truth}", "false", "id switches"], rows, "rrrrrr", run)


TABLES: dict[str, Callable[[], str]] = {f.__name__.replace("_", "-"): f for f in (
    models, accuracy_dlib, resolution, accuracy_regions, eval_300w, speed, bench, bench_batch, precision, landmark_stage,
    speed_accuracy, peers, detector_speed, train_step, detector, video_motion, video_samples, video_sweep)}
README_TABLES = ("models", "accuracy-dlib", "resolution", "speed")


def fill_markers(text: str) -> str:
    """Every `<!-- table:NAME -->` block of a docs page or card, regenerated."""
    return MARKER.sub(lambda m: m[1] + TABLES[m[2]]() + m[4], text)


def fill_readme(text: str) -> str:
    """The README's tables, each found by its header row and ending at the next blank line after its source."""
    for name in README_TABLES:
        new = TABLES[name]()
        start = text.find(new.splitlines()[0] + "\n")
        if start < 0:
            raise SystemExit(f"README.md: no table with the header of {name!r}")
        end = text.find("\n\n", text.find("\nSource: ", start)) + 1
        text = text[:start] + new + text[end:]
    return text


def documents() -> dict[Path, str]:
    """Each file that holds generated tables, with its text as the results make it."""
    out = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "fflm" / "assets").glob("*.md"))]:
        if path.exists():
            text = path.read_text()
            out[path] = fill_readme(text) if path.name == "README.md" else fill_markers(text)
    return out


def main(argv: list[str]) -> int:
    stale = [p for p, text in documents().items() if p.read_text() != text]
    if "--check" in argv:
        for p in stale:
            print(f"{p.relative_to(ROOT)}: tables differ from benchmarks/results (run python benchmarks/tables.py)",
                  file=sys.stderr)
        return 1 if stale else 0
    for p, text in documents().items():
        if p in stale:
            p.write_text(text)
            print(f"rewrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
