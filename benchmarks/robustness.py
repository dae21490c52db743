"""End-to-end robustness cases of `fflm detect` and `fflm batch` on files made in a temporary folder: one
pass/fail line per case, exit code 1 when any case fails. No network, no GPU; the shipped weights, and
`--detector none` (the whole image is the face) where the case is not about detection.

    python benchmarks/robustness.py            # every case (~3 min on 2 CPU cores)
    python benchmarks/robustness.py --quick    # without the 2,000-frame memory case
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # this script's own reference decoding, quiet like fflm's

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_VIDEO = ROOT.parent / "shared" / "data" / "samples" / "frames.mp4"
ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
ENV.pop("FFLM_DEBUG", None)


def fflm(*args, stdin: bytes | None = None, none: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """The installed command (as `python -m fflm`), `--detector none` added to detect/batch unless told."""
    argv = [str(a) for a in args]
    if none and argv[0] in ("detect", "batch") and "--detector" not in argv:
        argv += ["--detector", "none"]
    return subprocess.run([sys.executable, "-m", "fflm", *argv], input=stdin, capture_output=True, env=ENV,
                          timeout=timeout)


def text(p: subprocess.CompletedProcess, which: str = "stderr") -> str:
    return getattr(p, which).decode(errors="replace")


def fflm_lines_only(err: str) -> bool:
    return all(line.startswith("fflm") or "━" in line for line in err.splitlines())


def clean_error(err: str) -> bool:
    return "Traceback" not in err and "Errno" not in err and ".tmp" not in err


def png(path: Path, h: int = 48, w: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


def video(path: Path, frames: int, size: int = 64) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (size, size))
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    for k in range(frames):
        vw.write(np.roll(base, k, axis=1))
    vw.release()
    return path


# --- the cases: each returns (passed, what was seen) ------------------------------------------------------------


def input_as_output(t: Path):
    img = png(t / "v.png")
    before = img.read_bytes()
    runs = [fflm("detect", img, "--overlay", img), fflm("detect", img, "--out", img), fflm("detect", img, "-f", "csv", "-o", img)]
    ok = all(r.returncode == 2 and len(text(r).splitlines()) == 1 for r in runs) and img.read_bytes() == before
    return ok, f"exit codes {[r.returncode for r in runs]}, photo unchanged: {img.read_bytes() == before}"


def overlays_not_read_back(t: Path):
    for k in range(3):
        png(t / "in" / f"a{k}.png", seed=k)
    counts = []
    for _ in range(2):
        r = fflm("batch", t / "in", "--overlay", t / "in" / "over", "-f", "jsonl")
        counts.append(len(text(r, "stdout").splitlines()))
    again = [p.name for p in (t / "in").rglob("*.fflm.fflm.*")]
    return counts == [3, 3] and not again, f"images per run {counts}, overlays of overlays {again}"


def device_output(t: Path):
    dev = t / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError as e:
        return None, f"skipped: cannot make a device node ({e.strerror})"
    png(t / "in" / "a.png")
    r = fflm("batch", t / "in", "--overlay", t / "in", "-o", dev)
    return r.returncode == 0 and stat.S_ISCHR(os.lstat(dev).st_mode), f"exit {r.returncode}, still a device: {stat.S_ISCHR(os.lstat(dev).st_mode)}"


def fifo_output(t: Path):
    fifo = t / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    r = fflm("detect", png(t / "a.png"), "-o", fifo)
    data, _ = reader.communicate(timeout=60)
    ok = r.returncode == 0 and json.loads(data)["width"] == 48 and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    return ok, f"exit {r.returncode}, {len(data)} bytes read from the FIFO, still a FIFO: {stat.S_ISFIFO(os.lstat(fifo).st_mode)}"


def stdout_names(t: Path):
    img = png(t / "a.png")
    runs = [fflm("detect", img, "-o", "/proc/self/fd/1", "-f", "jsonl"), fflm("detect", img, "-o", "-", "-f", "jsonl")]
    ok = all(r.returncode == 0 and json.loads(r.stdout)["width"] == 48 for r in runs)
    return ok, f"exit codes {[r.returncode for r in runs]}"


def symlink_output(t: Path):
    (t / "real").mkdir()
    (t / "real" / "r.json").write_text("old")
    (t / "r.json").symlink_to(t / "real" / "r.json")
    r = fflm("detect", png(t / "a.png"), "-o", t / "r.json")
    ok = r.returncode == 0 and (t / "r.json").is_symlink() and json.loads((t / "real" / "r.json").read_text())["width"] == 48
    return ok, f"exit {r.returncode}, still a symlink: {(t / 'r.json').is_symlink()}"


def unwritable_checked_first(t: Path):
    png(t / "in" / "a.png")
    place = Path("/sys/fflm-robustness") if os.geteuid() == 0 else t / "ro"
    if place == t / "ro":
        place.mkdir(mode=0o555)
    r = fflm("batch", t / "in", "-o", place / "out.csv")
    err = text(r)
    return r.returncode == 1 and "images" not in err and clean_error(err), err.strip()


def name_clashes(t: Path):
    png(t / "two" / "x.png")
    cv2.imwrite(str(t / "two" / "x.jpg"), np.full((40, 40, 3), 90, np.uint8))
    r = fflm("batch", t / "two", "-f", "pts", "-o", t / "pts", "--overlay", t / "over")
    pts, over = sorted(os.listdir(t / "pts")), sorted(os.listdir(t / "over"))
    return r.returncode == 0 and len(pts) == 2 and len(over) == 2, f"pts {pts}, overlays {over}"


def error_lines_in_words(t: Path):
    (t / "pts").mkdir()
    (t / "astro.json").write_text("{}")
    img = png(t / "a.png")
    runs = [fflm("detect", img, "-o", t / "pts"), fflm("detect", img, "-f", "pts", "-o", t / "astro.json")]
    errs = [text(r).strip() for r in runs]
    return all(r.returncode == 2 and clean_error(e) for r, e in zip(runs, errs)), " | ".join(errs)


def _stop(t: Path, fmt: str, sig: signal.Signals):
    for k in range(300):
        png(t / "many" / f"{k:03d}.png", 32, 32, k)
    out = t / f"r.{fmt}"
    p = subprocess.Popen([sys.executable, "-m", "fflm", "batch", str(t / "many"), "--detector", "none", "-f", fmt, "-o",
                          str(out), "-b", "1", "-j", "1", "--overlay", str(t / "ov")], env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:  # until a few images are done: their overlays are written
        if (t / "ov").is_dir() and len(os.listdir(t / "ov")) >= 5:
            break
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    return p.returncode, out, err.decode()


def sigint_keeps_jsonl(t: Path):
    rc, out, err = _stop(t, "jsonl", signal.SIGINT)
    lines = [json.loads(line)["image"] for line in out.read_text().splitlines()]
    ok = rc == 130 and lines == [str(t / "many" / f"{k:03d}.png") for k in range(len(lines))] and \
        f"after {len(lines)} images" in err
    return ok, f"exit {rc}, {len(lines)} complete lines in order; {err.strip().splitlines()[-1]}"


def sigterm_marks_json(t: Path):
    rc, out, err = _stop(t, "json", signal.SIGTERM)
    d = json.loads(out.read_text()) if out.exists() else {}
    if isinstance(d, list):
        return False, f"exit {rc}: the run ended before the signal ({len(d)} images)"
    ok = rc == 143 and d.get("incomplete") is True and d.get("done") == len(d.get("results", []))
    return ok, f"exit {rc}, incomplete: {d.get('incomplete')}, done {d.get('done')}"


def overlay_failure_keeps_landmarks(t: Path):
    for k in range(3):
        png(t / "in" / f"a{k}.png", seed=k)
    (t / "over" / "a1.fflm.jpg").mkdir(parents=True)
    r = fflm("batch", t / "in", "-f", "csv", "-o", t / "r.csv", "--overlay", t / "over")
    rows = len((t / "r.csv").read_text().splitlines()) - 1
    return r.returncode == 1 and rows == 3, f"exit {r.returncode}, {rows} CSV rows of 3 images"


def peak_rss_mb(t: Path, frames: int) -> float:
    clip = video(t / f"clip{frames}.avi", frames)
    code = ("import resource, sys; from fflm.cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, file=open(sys.argv[0] + '.rss', 'w'))")
    marker = t / f"rss{frames}"
    subprocess.run([sys.executable, "-c", code.replace("sys.argv[0]", repr(str(marker))), "batch", str(clip),
                    "--detector", "none", "-f", "csv", "-o", str(t / f"r{frames}.csv")], env=ENV, capture_output=True,
                   timeout=900)
    return float(Path(str(marker) + ".rss").read_text())


def bounded_memory(t: Path):
    small, big = peak_rss_mb(t, 200), peak_rss_mb(t, 2000)
    return big - small < 50, f"peak RSS {small:.0f} MB for 200 frames, {big:.0f} MB for 2,000 (64×64 MJPG)"


def damaged_video_frames(t: Path):
    if SAMPLE_VIDEO.exists():
        data = bytearray(SAMPLE_VIDEO.read_bytes())
    else:
        data = bytearray(video(t / "made.avi", 35, 320).read_bytes())
    rng = np.random.default_rng(0)
    for off in range(5000, len(data), 5000):  # 50-byte runs garbled every 5 kB
        data[off:off + 50] = rng.integers(0, 256, min(50, len(data) - off), dtype=np.uint8).tobytes()
    bad = t / ("bad" + (SAMPLE_VIDEO.suffix if SAMPLE_VIDEO.exists() else ".avi"))
    bad.write_bytes(bytes(data))
    cap = cv2.VideoCapture(str(bad))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    plain = sum(cap.read()[0] for _ in range(count))  # a plain read loop over the container's frame count
    r = fflm("batch", bad, "-f", "jsonl")
    rows = [json.loads(line) for line in text(r, "stdout").splitlines()]
    good = sum("error" not in row for row in rows)
    failed = [row["frame"] for row in rows if "error" in row]
    ok = good == plain and r.returncode == (1 if failed else 0) and fflm_lines_only(text(r))
    return ok, f"fflm {good} frames decoded, {len(failed)} reported damaged {failed[:6]}; plain read loop {plain} of {count}"


def no_library_chatter(t: Path):
    import struct
    import zlib

    ok, buf = cv2.imencode(".png", np.full((40, 50, 3), 120, np.uint8))
    body = b"Comment\x00hi"
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", (zlib.crc32(b"tEXt" + body) ^ 1) & 0xFFFFFFFF)
    (t / "warn.png").write_bytes(buf.tobytes()[:33] + chunk + buf.tobytes()[33:])
    (t / "cut.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    runs = [fflm("detect", t / "warn.png"), fflm("batch", t / "cut.mp4")]
    return all(fflm_lines_only(text(r)) for r in runs), " | ".join(text(r).strip().splitlines()[-1] for r in runs)


def every_input_in_json(t: Path):
    (t / "zero.png").write_bytes(b"")
    (t / "text.jpg").write_text("hello")
    ok_, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 100, np.uint8))
    (t / "cut.jpg").write_bytes(buf.tobytes()[: len(buf) // 2])
    r = fflm("detect", t / "zero.png", t / "text.jpg", t / "cut.jpg", png(t / "good.png"))
    d = json.loads(r.stdout)
    errors = [("error" in x) for x in d]
    return r.returncode == 1 and errors == [True, True, True, False], f"exit {r.returncode}, error flags {errors}"


def one_line_per_point(t: Path):
    r = fflm("detect", png(t / "a.png"))
    d = json.loads(r.stdout)
    lines = text(r, "stdout").splitlines()
    return len(lines) < 90 and len(d["faces"][0]["landmarks"]) == 68, f"{len(lines)} lines for one face of 68 points"


def csv_reads_back(t: Path):
    for k in range(2):
        png(t / "in" / f"a{k}.png", 64, 64, k)
    fflm("batch", t / "in", "-o", t / "out" / "detected.csv")
    r = fflm("eval", t / "out" / "detected.csv", "--json")
    ok = r.returncode == 0 and json.loads(r.stdout)["faces"] == 2
    return ok, f"fflm eval on fflm's CSV: exit {r.returncode}" + ("" if ok else f": {text(r).strip()}")


def stdin_and_content(t: Path):
    img = png(t / "a.png")
    ok_, buf = cv2.imencode(".jpg", np.full((40, 50, 3), 100, np.uint8))
    (t / "b.jfif").write_bytes(buf.tobytes())
    (t / "noext").write_bytes(buf.tobytes())
    runs = [fflm("detect", "-", stdin=img.read_bytes()), fflm("detect", t / "b.jfif"), fflm("detect", t / "noext")]
    return all(r.returncode == 0 and "width" in json.loads(r.stdout) for r in runs), f"exit codes {[r.returncode for r in runs]}"


def deep_and_float_pixels(t: Path):
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(t / "eight.png"), rgb)
    cv2.imwrite(str(t / "twelve.png"), rgb.astype(np.uint16) * 16)  # 12-bit data: at most 4080
    a, b = (json.loads(fflm("detect", t / n).stdout)["faces"][0]["landmarks"] for n in ("eight.png", "twelve.png"))
    code = ("import numpy as np, fflm; img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8); "
            "lm = fflm.Landmarker(detector='none', device='cpu'); "
            "print(np.abs(lm.predict(img)[0].landmarks - lm.predict(img.astype(np.float32))[0].landmarks).max())")
    diff = float(subprocess.run([sys.executable, "-c", code], capture_output=True, env=ENV, text=True, timeout=300).stdout)
    d12 = float(np.abs(np.array(a) - np.array(b)).max())
    return d12 < 1.0 and diff < 1e-3, f"12-bit PNG vs 8-bit: {d12:.3f} px; float 0..255 vs uint8: {diff:.5f} px"


def incompatible_options(t: Path):
    img, other = png(t / "a.png"), png(t / "b.png")
    runs = [fflm("detect", img, "--detector", "yunet", none=False), fflm("detect", img, other, "--overlay", t / "two.png"),
            fflm("info", t)]
    ok = all(r.returncode == 2 for r in runs) and not (t / "two.png").exists()
    return ok, f"exit codes {[r.returncode for r in runs]}"


def scales_with_the_image(t: Path):
    img = cv2.imread(str(ROOT / "fflm" / "assets" / "astronaut.png"))
    box = json.loads((ROOT / "tests" / "golden" / "astronaut.boxes.json").read_text())["astronaut.png"][0]
    errs = {}
    for k in (1, 4):
        cv2.imwrite(str(t / f"x{k}.png"), np.repeat(np.repeat(img, k, 0), k, 1))
        (t / f"b{k}.json").write_text(json.dumps({f"x{k}.png": [[k * (v + 0.5) - 0.5 for v in box]]}))
        errs[k] = np.array(json.loads(fflm("detect", t / f"x{k}.png", "--boxes", t / f"b{k}.json", "--precision",
                                           "float32", none=False).stdout)["faces"][0]["landmarks"])
    mean = np.abs((errs[4] - (4 * (errs[1] + 0.5) - 0.5)).mean(axis=0))
    return bool((mean <= 0.2).all()), f"4× upscale: mean |error| x {mean[0]:.3f} px, y {mean[1]:.3f} px (limit 0.20)"


def help_at_80_columns(t: Path):
    bad = []
    for cmd in ("detect", "batch", "eval", "info", "train", "bench"):
        r = subprocess.run([sys.executable, "-m", "fflm", cmd, "--help"], capture_output=True, text=True,
                           env={**ENV, "COLUMNS": "80"}, timeout=120)
        if "…" in r.stdout or "<bool>" in r.stdout or max(map(len, r.stdout.splitlines())) > 80:
            bad.append(cmd)
    return not bad, f"cut or noisy: {bad or 'none'}"


def one_name_per_concept(t: Path):
    png(t / "in" / "a.png")
    r = fflm("batch", t / "in", "--overlay-dir", t / "ov", "--workers", "1", "--threads", "1")
    helps = [subprocess.run([sys.executable, "-m", "fflm", c, "--help"], capture_output=True, text=True, env=ENV,
                            timeout=120).stdout for c in ("detect", "batch", "eval")]
    ok = r.returncode == 0 and all("--overlay" in h and "--threads" in h for h in helps[:2]) and "--detector-model" in helps[2]
    return ok, f"older names accepted: exit {r.returncode}; --overlay/--threads on detect and batch, detector options on eval"


CASES = [
    ("1 an output that is an input is refused", input_as_output),
    ("1 overlays inside the input folder are not read back", overlays_not_read_back),
    ("2 a device output stays a device", device_output),
    ("2 a FIFO output is streamed into", fifo_output),
    ("2 /proc/self/fd/1 and - are stdout", stdout_names),
    ("2 a symlink output stays a symlink", symlink_output),
    ("3 an unwritable output fails before the first image", unwritable_checked_first),
    ("4 same stems get their own .pts and overlays", name_clashes),
    ("5 error lines without temp names or errno", error_lines_in_words),
    ("6 SIGINT keeps the finished jsonl lines, exit 130", sigint_keeps_jsonl),
    ("6 SIGTERM writes json marked incomplete, exit 143", sigterm_marks_json),
    ("7 an overlay failure keeps the landmarks", overlay_failure_keeps_landmarks),
    ("8 memory bounded: 2,000 frames within 50 MB of 200", bounded_memory),
    ("9 damaged video frames skipped and reported", damaged_video_frames),
    ("10 no FFmpeg or libpng lines on stderr", no_library_chatter),
    ("11 every input in JSON, failed ones with error", every_input_in_json),
    ("12 JSON: one line per point", one_line_per_point),
    ("13 fflm's CSV reads back in fflm eval", csv_reads_back),
    ("14 stdin, .jfif and no extension", stdin_and_content),
    ("15 12-bit PNG and float 0..255 arrays", deep_and_float_pixels),
    ("16 incompatible options are usage errors", incompatible_options),
    ("20 results scale with the image", scales_with_the_image),
    ("21 help at 80 columns", help_at_80_columns),
    ("22 one name per concept", one_name_per_concept),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the 2,000-frame memory case")
    ap.add_argument("-k", default="", help="run only the cases whose name contains this")
    a = ap.parse_args()
    failed = 0
    for name, case in CASES:
        if a.k not in name or (a.quick and case is bounded_memory):
            continue
        t0 = time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="fflm-robustness-"))
        try:
            ok, seen = case(folder)
        except Exception as e:  # noqa: BLE001 - a case that breaks is a failed case, and the others still run
            ok, seen = False, f"{type(e).__name__}: {e}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        word = "skip" if ok is None else "pass" if ok else "FAIL"
        failed += ok is False
        print(f"{word}  {name}  ({time.perf_counter() - t0:.1f} s): {seen}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
