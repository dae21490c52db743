"""What detect and batch guarantee about their outputs: no input is ever overwritten, devices, FIFOs, symlinks
and stdout stay what they are, every output is checked before the first image, names never clash, errors say
what and why in words, batch streams its results and stops cleanly on SIGINT/SIGTERM, and every input and
video frame is accounted for."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest

import fflm.outputs as outputs
from fflm.outputs import read_csv
from fflm.annotations import read_annotations

from test_cli import _png, _run, _truncated_jpeg, cli, one_error
from test_imageio import _garble_frames

N = 68


@pytest.fixture
def photo(tmp_path) -> Path:
    return _png(tmp_path / "photo.png", 40, 50, 1)


@pytest.fixture
def album(tmp_path) -> Path:
    """Six small PNGs."""
    for k in range(6):
        _png(tmp_path / "album" / f"p{k}.png", 32, 32, k)
    return tmp_path / "album"


def _usage(err: str) -> str:
    line = one_error(err)
    assert "error" in line and "Errno" not in line and ".tmp" not in line
    return line


# --- 1. an output that is an input is refused --------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--overlay", "{p}"], ["--out", "{p}"], ["-f", "csv", "-o", "{p}"],
                                  ["-o", "{link}"], ["-o", "{hard}"], ["-o", "{dotted}"]])
def test_detect_refuses_to_overwrite_its_input(capsys, weights, photo, args):
    link, hard = photo.parent / "link.png", photo.parent / "hard.png"
    link.symlink_to(photo)
    os.link(photo, hard)
    before = photo.read_bytes()
    argv = [a.format(p=photo, link=link, hard=hard, dotted=photo.parent / "x" / ".." / photo.name) for a in args]
    (photo.parent / "x").mkdir()
    rc, out, err = cli(capsys, "detect", photo, "-w", weights, *argv)
    assert rc == 2 and out == ""
    assert "one of the inputs" in _usage(err)
    assert photo.read_bytes() == before and link.is_symlink()


def test_batch_refuses_an_output_that_is_one_of_its_images(capsys, weights, album):
    before = (album / "p3.png").read_bytes()
    rc, _, err = cli(capsys, "batch", album, "-w", weights, "-f", "csv", "-o", album / "p3.png")
    assert rc == 2 and "one of the inputs" in _usage(err)
    assert (album / "p3.png").read_bytes() == before


def test_batch_never_reads_its_own_overlays_back(capsys, weights, album):
    for _ in range(2):
        rc, out, err = cli(capsys, "batch", album, "-w", weights, "--overlay", album / "over")
        assert rc == 0 and len(json.loads(out)) == 6, err
    cli(capsys, "batch", album, "-w", weights, "--overlay", album)  # overlays beside the photos
    rc, out, _ = cli(capsys, "batch", album, "-w", weights, "--overlay", album)
    assert rc == 0 and len(json.loads(out)) == 6
    assert not [p for p in album.rglob("*") if ".fflm.fflm." in p.name]


# --- 2. devices, FIFOs, symlinks and stdout ------------------------------------------------------------------------


@pytest.fixture
def char_device(tmp_path) -> Path:
    """A character device like /dev/null, made inside the test's folder (needs root, else skipped)."""
    path = tmp_path / "null"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot make a device node here: {e}")
    return path


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_device_output_is_written_into_never_replaced(capsys, weights, photo, char_device, fmt):
    rc, _, err = cli(capsys, "detect", photo, "-w", weights, "-f", fmt, "-o", char_device, "--overlay", char_device)
    assert rc == 0, err
    assert stat.S_ISCHR(os.lstat(char_device).st_mode)


def test_batch_into_a_device_with_overlays_beside_the_photos(capsys, weights, album, char_device):
    rc, _, err = cli(capsys, "batch", album, "-w", weights, "--overlay", album, "-o", char_device)
    assert rc == 0, err
    assert stat.S_ISCHR(os.lstat(char_device).st_mode)


def test_a_fifo_output_is_streamed_into(capsys, weights, photo, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    rc, _, err = cli(capsys, "detect", photo, "-w", weights, "-o", fifo)
    data, _ = reader.communicate(timeout=60)
    assert rc == 0, err
    assert json.loads(data)["image"] == str(photo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_dash_is_stdout(capsys, weights, photo):
    rc, out, _ = cli(capsys, "detect", photo, "-w", weights, "-f", "jsonl", "-o", "-")
    assert rc == 0 and json.loads(out)["image"] == str(photo)


def test_proc_self_fd_1_is_stdout(weights, photo):
    proc = _run("detect", photo, "-w", weights, "-f", "jsonl", "-o", "/proc/self/fd/1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["image"] == str(photo)


def test_a_symlink_output_stays_a_symlink_and_its_target_gets_the_data(capsys, weights, photo, tmp_path):
    target, link = tmp_path / "real" / "r.json", tmp_path / "r.json"
    target.parent.mkdir()
    target.write_text("old")
    link.symlink_to(target)
    rc, _, _ = cli(capsys, "detect", photo, "-w", weights, "-o", link)
    assert rc == 0 and link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["image"] == str(photo)
    assert sorted(os.listdir(target.parent)) == ["r.json"]  # the temp file was renamed over the target


# --- 3. every output is checked before the first image ---------------------------------------------------------------


def test_a_file_in_the_way_of_the_output_folder_fails_before_any_image(capsys, weights, album, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    rc, out, err = cli(capsys, "batch", album, "-w", weights, "-o", tmp_path / "file.txt" / "out.csv")
    assert rc == 1 and out == ""
    assert one_error(err) == f"fflm: error: cannot write {tmp_path}/file.txt/out.csv: {tmp_path}/file.txt is a file, not a folder"


@pytest.mark.parametrize("option", ["-o", "--overlay"])
def test_an_unwritable_place_fails_before_any_image(capsys, weights, album, tmp_path, option):
    if os.geteuid() == 0:  # root writes into read-only folders: /sys refuses even root
        place = Path("/sys/fflm-test-outputs")
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        place = tmp_path / "ro"
    rc, out, err = cli(capsys, "batch", album, "-w", weights, option, place / "out.csv" if option == "-o" else place)
    assert rc == 1 and out == ""
    assert "permission denied" in one_error(err) and "images" not in err


# --- 4. names never clash --------------------------------------------------------------------------------------------


def test_same_stem_different_extension_get_their_own_files(capsys, weights, tmp_path):
    two = tmp_path / "two"
    _png(two / "x.png", 32, 32, 1)
    assert cv2.imwrite(str(two / "x.jpg"), np.full((30, 30, 3), 90, np.uint8))
    _png(two / "sub" / "x.png", 32, 32, 2)
    _png(two / "y.png", 32, 32, 3)
    rc, _, err = cli(capsys, "batch", two, "-r", "-w", weights, "-f", "pts", "-o", tmp_path / "pts",
                     "--overlay", tmp_path / "over")
    assert rc == 0, err
    assert sorted(p.relative_to(tmp_path / "pts").as_posix() for p in (tmp_path / "pts").rglob("*.pts")) == [
        "sub/x_0.pts", "x.jpg_0.pts", "x.png_0.pts", "y_0.pts"]
    assert len(list((tmp_path / "over").rglob("*.fflm.jpg"))) == 4


# --- 5. error lines say what and why -----------------------------------------------------------------------------------


def test_a_folder_given_as_a_file_output(capsys, weights, photo, tmp_path):
    (tmp_path / "pts").mkdir()
    rc, _, err = cli(capsys, "detect", photo, "-w", weights, "-o", tmp_path / "pts")
    assert rc == 2 and "is a folder" in _usage(err)


def test_a_file_given_as_the_pts_folder(capsys, weights, photo, tmp_path):
    (tmp_path / "astro.json").write_text("{}")
    rc, _, err = cli(capsys, "detect", photo, "-w", weights, "-f", "pts", "-o", tmp_path / "astro.json")
    assert rc == 2 and "is a file" in _usage(err)
    assert (tmp_path / "astro.json").read_text() == "{}"


# --- 6. streaming and clean stops ------------------------------------------------------------------------------------


def _stop_after(monkeypatch, images: int, signum: int, seen: list) -> None:
    """Send `signum` to this process right after the writer took its `images`-th result, recording what the
    output file held at each image (it is flushed per image)."""
    add = outputs.ResultWriter.add

    def add_then_signal(self, r):
        add(self, r)
        if self.out != "-" and self.fmt != "json":
            seen.append(len(Path(self.out).read_text().splitlines()))
        if self.count == images:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(outputs.ResultWriter, "add", add_then_signal)


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_jsonl_is_streamed_and_a_stop_keeps_what_finished(capsys, monkeypatch, weights, album, tmp_path, signum, code):
    seen: list = []
    _stop_after(monkeypatch, 3, signum, seen)
    out = tmp_path / "r.jsonl"
    rc, _, err = cli(capsys, "batch", album, "-w", weights, "-o", out, "-b", "1", "-j", "1")
    assert rc == code
    assert seen == [1, 2, 3]  # each image's line was on disk as soon as it finished
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["image"] for d in lines] == [str(album / f"p{k}.png") for k in range(3)]
    assert f"interrupted by {signal.Signals(signum).name} after 3 images" in err


def test_csv_is_streamed_with_its_header_first(capsys, monkeypatch, weights, album, tmp_path):
    seen: list = []
    _stop_after(monkeypatch, 2, signal.SIGINT, seen)
    rc, _, _ = cli(capsys, "batch", album, "-w", weights, "-o", tmp_path / "r.csv", "-b", "1", "-j", "1")
    assert rc == 130 and seen == [2, 3]
    assert [r["image"] for r in read_csv((tmp_path / "r.csv").read_text())] == [str(album / "p0.png"), str(album / "p1.png")]


def test_an_interrupted_json_is_written_and_marked_incomplete(capsys, monkeypatch, weights, album, tmp_path):
    _stop_after(monkeypatch, 4, signal.SIGINT, [])
    rc, _, err = cli(capsys, "batch", album, "-w", weights, "-o", tmp_path / "r.json", "-b", "2", "-j", "1")
    assert rc == 130
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["incomplete"] is True and d["done"] == 4 and d["reason"] == "interrupted by SIGINT"
    assert [r["image"] for r in d["results"]] == [str(album / f"p{k}.png") for k in range(4)]


def test_sigint_to_the_installed_command(weights, tmp_path):
    for k in range(400):
        _png(tmp_path / "many" / f"{k:03d}.png", 24, 24, k)
    out = tmp_path / "r.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fflm", "batch", str(tmp_path / "many"), "-w", str(weights),
                             "--detector", "none", "-o", str(out), "-b", "1", "-j", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    lines = out.read_text().splitlines()
    assert proc.returncode == 130, err
    assert [json.loads(line)["image"] for line in lines] == [str(tmp_path / "many" / f"{k:03d}.png") for k in range(len(lines))]
    assert f"interrupted by SIGINT after {len(lines)} images" in err


# --- 7. an overlay that cannot be written keeps the landmarks ------------------------------------------------------------


def test_an_overlay_failure_keeps_the_landmarks(capsys, weights, album, tmp_path):
    (tmp_path / "over" / "p2.fflm.jpg").mkdir(parents=True)  # a folder where p2's overlay should go
    rc, _, err = cli(capsys, "batch", album, "-w", weights, "-o", tmp_path / "r.csv", "--overlay", tmp_path / "over")
    assert rc == 1
    assert [r["image"] for r in read_csv((tmp_path / "r.csv").read_text())] == [str(album / f"p{k}.png") for k in range(6)]
    assert f"cannot write {tmp_path}/over/p2.fflm.jpg: it is a folder (the landmarks are kept)" in err
    assert "0 failed, 1 overlays not written" in err


# --- 8. bounded memory ---------------------------------------------------------------------------------------------------


def test_batch_holds_no_list_of_every_result(capsys, monkeypatch, weights, tmp_path):
    for k in range(40):
        _png(tmp_path / "many" / f"{k:02d}.png", 16, 16, k)
    alive: list = []
    add = outputs.ResultWriter.add

    def add_and_count(self, r):  # results hold no reference cycles: they are freed when the last reference goes
        add(self, r)
        alive.append(sum(ref() is not None for ref in refs))
        refs.append(weakref.ref(r))

    refs: list = []
    monkeypatch.setattr(outputs.ResultWriter, "add", add_and_count)
    rc, _, _ = cli(capsys, "batch", tmp_path / "many", "-w", weights, "-f", "csv", "-o", tmp_path / "r.csv",
                   "-b", "2", "-j", "1")
    assert rc == 0 and len(alive) == 40
    assert max(alive) <= 6  # the results still in flight (a batch or two), not all 40


# --- 9, 10. damaged video frames, and no library chatter -------------------------------------------------------------------


@pytest.fixture
def damaged_video(tmp_path) -> Path:
    path = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(8):
        vw.write(np.full((48, 64, 3), 20 * k + 20, np.uint8))
    vw.release()
    _garble_frames(path, [2, 5])
    return path


def test_damaged_frames_are_reported_and_later_frames_processed(weights, damaged_video):
    proc = _run("batch", damaged_video, "-w", weights, "-f", "jsonl")
    assert proc.returncode == 1
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["frame"] for r in rows] == list(range(8))
    assert [r["frame"] for r in rows if "error" in r] == [2, 5]
    assert "frame 5: cannot be decoded" in rows[5]["error"]
    assert "8 images" in proc.stderr and "2 failed" in proc.stderr
    assert _only_fflm(proc.stderr)  # no FFmpeg lines


def _only_fflm(err: str) -> bool:
    """Every stderr line is fflm's: a message or its progress bar."""
    return all(line.startswith("fflm") or "━" in line for line in err.splitlines())


def test_library_chatter_stays_off_stderr(weights, tmp_path):
    import struct
    import zlib

    ok, buf = cv2.imencode(".png", np.full((40, 50, 3), 120, np.uint8))
    png = buf.tobytes()
    text = b"Comment\x00hi"
    bad_crc = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", (zlib.crc32(b"tEXt" + text) ^ 1) & 0xFFFFFFFF)
    (tmp_path / "warn.png").write_bytes(png[:33] + bad_crc + png[33:])  # libpng: "tEXt: CRC error"
    proc = _run("detect", tmp_path / "warn.png", "-w", weights)  # (FFmpeg's lines: the damaged video above)
    assert proc.returncode == 0 and _only_fflm(proc.stderr), proc.stderr


# --- 11, 12. every input in JSON, one line per point ------------------------------------------------------------------------


def test_every_input_is_in_json_when_every_input_fails(capsys, weights, tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    cut = _truncated_jpeg(tmp_path / "cut.jpg")
    rc, out, err = cli(capsys, "detect", tmp_path / "zero.png", tmp_path / "text.jpg", cut, "-w", weights)
    assert rc == 1 and len([line for line in err.splitlines() if line.startswith("fflm: error:")]) == 3
    d = json.loads(out)
    assert [r["image"] for r in d] == [str(tmp_path / n) for n in ("zero.png", "text.jpg", "cut.jpg")]
    assert all(set(r) == {"image", "error"} for r in d)


def test_json_has_one_line_per_point_and_stays_strict(capsys, weights, photo):
    rc, out, _ = cli(capsys, "detect", photo, "-w", weights)
    assert rc == 0
    d = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not strict JSON"))
    lines = out.splitlines()
    points = [line.strip().rstrip(",") for line in lines if line.startswith("    [")]
    assert len(points) == N and all(json.loads(p) == q for p, q in zip(points, d["faces"][0]["landmarks"]))
    assert len(lines) < N + 20


# --- 13. fflm's CSV reads back as annotations ----------------------------------------------------------------------------------


def test_fflm_csv_reads_back_as_annotations(capsys, weights, album, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, _ = cli(capsys, "batch", "album", "-w", weights, "-o", "results/detected.csv")
    assert rc == 0
    rows = read_csv((tmp_path / "results" / "detected.csv").read_text())
    samples = read_annotations(tmp_path / "results" / "detected.csv", N)
    assert [s.image.resolve() for s in samples] == [(album / f"p{k}.png").resolve() for k in range(6)]
    np.testing.assert_allclose(samples[0].points, rows[0]["landmarks"])


# --- 14. stdin, and images by content ----------------------------------------------------------------------------------------------


def test_detect_reads_an_image_from_stdin(capsys, monkeypatch, weights, photo, tmp_path):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(photo.read_bytes())))
    rc, out, err = cli(capsys, "detect", "-", "-w", weights, "--overlay", tmp_path / "ov")
    assert rc == 0, err
    d = json.loads(out)
    assert (d["image"], d["width"], d["height"]) == ("-", 50, 40)
    assert os.listdir(tmp_path / "ov") == ["stdin.fflm.jpg"]


@pytest.mark.parametrize("name", ["photo.jfif", "photo"])
def test_a_jpeg_by_any_name(capsys, weights, tmp_path, name):
    ok, buf = cv2.imencode(".jpg", np.full((40, 50, 3), 100, np.uint8))
    (tmp_path / name).write_bytes(buf.tobytes())
    rc, out, _ = cli(capsys, "detect", tmp_path / name, "-w", weights)
    assert rc == 0 and json.loads(out)["width"] == 50


# --- 16. options that cannot work together --------------------------------------------------------------------------------------------


def test_incompatible_options_are_usage_errors(capsys, weights, photo, tmp_path):
    rc, _, err = cli(capsys, "detect", photo, "-w", weights, "--detector", "none", "--detector-model", photo)
    assert rc == 2 and "--detector-model" in _usage(err)
    other = _png(tmp_path / "other.png")
    rc, _, err = cli(capsys, "detect", photo, other, "-w", weights, "--overlay", tmp_path / "two.png")
    assert rc == 2 and "give a folder" in _usage(err) and not (tmp_path / "two.png").exists()
    rc, _, err = cli(capsys, "info", tmp_path)
    assert rc == 2 and "is a folder" in _usage(err)
    rc, _, err = cli(capsys, "detect", "-", "-", "-w", weights)
    assert rc == 2 and "stdin" in _usage(err)
