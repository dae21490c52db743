"""`fflm batch --engine ray` and fflm.distributed (the fflm[ray] extra) on a real local Ray cluster started here:
the results of a local batch, failures per file, nothing lost when an actor is killed mid-run, one clear line for
an unreachable cluster or a missing extra."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import faces, one_error, run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two photos with a face each, one grey image without, an empty file and a damaged one."""
    import cv2

    d = tmp_path_factory.mktemp("frames")
    shutil.copyfile(ROOT / "fflm" / "assets" / "astronaut.png", d / "a.png")
    astronaut = cv2.imread(str(ROOT / "fflm" / "assets" / "astronaut.png"))
    cv2.imwrite(str(d / "b.jpg"), cv2.flip(astronaut, 1)[40:, :460])
    cv2.imwrite(str(d / "c.png"), np.full((48, 64, 3), 128, np.uint8))
    (d / "d.jpg").write_bytes(b"")
    (d / "e.jpg").write_bytes((d / "b.jpg").read_bytes()[:2000])
    return d


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ray_engine_gives_the_local_results(ray_cluster, folder, tmp_path, capsys):
    outs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.jsonl"
        # float32 by name: the actors' processes resolve auto without this test run's float32 default
        rc, _, err = run_cli(capsys, "batch", folder, "-o", out, "--engine", engine, "--precision", "float32")
        assert rc == 1 and "5 images, 2 faces, 1 with no face, 2 failed" in err
        outs[engine] = _jsonl(out)
    local, remote = outs["local"], outs["ray"]
    assert [r["image"] for r in remote] == [r["image"] for r in local] == [str(folder / n) for n in
                                                                             ("a.png", "b.jpg", "c.png", "d.jpg", "e.jpg")]
    for a, b in zip(local, remote):
        assert a.get("error") == b.get("error")  # the same message, naming the path as given
        assert len(a.get("faces", [])) == len(b.get("faces", []))
        for fa, fb in zip(a.get("faces", []), b.get("faces", [])):
            assert np.abs(np.array(fa["landmarks"]) - np.array(fb["landmarks"])).max() <= 1e-3
            assert fa["box"] == fb["box"]
    rc, _, _ = run_cli(capsys, "batch", folder, "-o", tmp_path / "ray.csv", "--engine", "ray", "--num-workers", "1")
    rc2, _, _ = run_cli(capsys, "batch", folder, "-o", tmp_path / "local.csv")
    assert rc == rc2 == 1
    assert (tmp_path / "ray.csv").read_text().splitlines()[0] == (tmp_path / "local.csv").read_text().splitlines()[0]
    assert len((tmp_path / "ray.csv").read_text().splitlines()) == 4  # header, two faces, one image without


def test_parquet_from_ray(ray_cluster, folder, tmp_path, capsys):
    from fflm.parquet import read_parquet

    rc, _, _ = run_cli(capsys, "batch", folder, "-o", tmp_path / "r.parquet", "--engine", "ray")
    rows = read_parquet(tmp_path / "r.parquet")
    assert rc == 1 and [r["image"].rsplit("/", 1)[-1] for r in rows] == ["a.png", "b.jpg", "c.png", "d.jpg", "e.jpg"]
    assert [r["error"] is None for r in rows] == [True, True, True, False, False]


def _parent(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def _actor_pids() -> list[int]:
    """This test run's actor processes (those of the Ray it started: the raylet is a child of this process)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"MapBatches(LandmarkWorker)" in (proc / "cmdline").read_bytes():
                pid, ancestors = int(proc.name), []
                while pid > 1 and len(ancestors) < 4:
                    pid = _parent(pid)
                    ancestors.append(pid)
                if os.getpid() in ancestors:
                    pids.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def test_nothing_is_lost_when_an_actor_is_killed(ray_cluster, tmp_path, weights):
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("finds the actor's process through /proc")
    from fflm import distributed
    from fflm.imageio import list_images

    paths = list_images(faces(tmp_path / "f", 10))
    w = str(weights)

    def make():  # each batch takes a while, so the kill lands mid-run
        import time as t

        from fflm.pipeline import Landmarker

        lm = Landmarker(w, device="cpu", detector="none", precision="float32")
        run = lm.landmarks
        lm.landmarks = lambda *a: (t.sleep(0.3), run(*a))[1]
        return lm

    got, killed = [], None
    for r in distributed.results(paths, make=make, num_workers=1, batch_size=1):
        got.append(r)
        if killed is None:
            pids = _actor_pids()
            assert pids, "no actor process found"
            os.kill(pids[0], signal.SIGKILL)
            killed = (pids[0], len(got))
    assert killed[1] < len(paths)  # killed before the run was done
    assert [r.image for r in got] == [str(p) for p in paths] and all(r.error is None and r.faces for r in got)
    from fflm.pipeline import Landmarker

    local = Landmarker(w, device="cpu", detector="none")
    for r in got[-3:]:
        (face,) = local.predict(r.image)
        assert np.abs(face.landmarks - r.faces[0].landmarks).max() <= 1e-3


def test_landmarks_returns_a_dataset_of_one_row_per_image(ray_cluster, folder, weights):
    from fflm import distributed

    ds = ray_cluster.data.read_binary_files(str(folder / "c.png"), include_paths=True)
    (row,) = distributed.landmarks(ds, weights=str(weights), detector="none").take_all()
    assert (row["width"], row["height"], row["error"]) == (64, 48, None)
    (face,) = json.loads(row["faces"])
    assert len(face["landmarks"]) == 68 and face["box"] == [-0.5, -0.5, 63.5, 47.5]


@pytest.mark.parametrize("address", ["127.0.0.1:9", "ray://127.0.0.1:9"])
def test_an_unreachable_cluster_is_one_line_and_exit_1(address, folder):
    pytest.importorskip("ray")
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "fflm", "batch", str(folder), "--engine", "ray", "--address", address],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and time.monotonic() - t < 60
    assert "no Ray cluster answers at " + address in one_error(p.stderr)


@pytest.mark.parametrize("args, says", [
    (["--address", "auto"], "need --engine ray"),
    (["--engine", "ray", "--overlay", "ov"], "no overlays"),
])
def test_engine_usage_errors(args, says, folder, capsys):
    rc, _, err = run_cli(capsys, "batch", folder, *args)
    assert rc == 2 and says in one_error(err)


def test_without_ray_one_line_names_the_extra(folder, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    rc, _, err = run_cli(capsys, "batch", folder, "--engine", "ray")
    assert rc == 2 and "pip install 'fflm[ray]'" in one_error(err)
