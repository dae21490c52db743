"""The wheel carries everything a user needs: built from the checkout and installed into a fresh virtual
environment outside it, `fflm detect` finds the face of a photo with the shipped weights and detector, and
`fflm info` and `fflm bench --help` work. The fresh environment borrows this one's packages (torch and the
rest) through a .pth line, so nothing is downloaded; fflm itself comes only from the wheel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run(*args, cwd: Path, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, **kw)
    assert out.returncode == 0, f"{args}: {out.stderr[-2000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh environment's bin folder, a working folder outside the checkout)."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to copy the checkout")
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"  # a clean copy of the tree git sees: the build leaves nothing in the checkout
    src.mkdir()
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", work / "dist", src, cwd=work)
    (wheel,) = (work / "dist").glob("fflm-*.whl")
    env = work / "env"
    run(sys.executable, "-m", "venv", "--without-pip", env, cwd=work)
    site = Path(run(env / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=work).stdout.strip())
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co., not fflm
    run(sys.executable, "-m", "pip", "--python", env / "bin" / "python", "install", "-q", "--no-deps", wheel, cwd=work)
    return env / "bin", work


def test_the_wheel_holds_the_assets_and_no_checkout_paths(installed):
    bin_dir, work = installed
    out = run(bin_dir / "python", "-c", "import fflm, fflm.weights as w; print(fflm.__file__); "
              "print(*(w.shipped(n) for n in w.SHIPPED), sep='\\n')", cwd=work).stdout.split()
    package = Path(out[0]).parent
    assert package.is_relative_to(work / "env"), out[0]  # fflm from the wheel, not the checkout
    for path in map(Path, out[1:]):
        assert path.is_relative_to(package) and path.is_file(), path


def test_detect_info_and_bench_help_from_the_wheel(installed):
    bin_dir, work = installed
    photo = work / "portrait.png"
    shutil.copy(ROOT / "fflm" / "assets" / "astronaut.png", photo)
    faces = json.loads(run(bin_dir / "fflm", "detect", photo, "--threads", "1", cwd=work).stdout)["faces"]
    assert len(faces) == 1 and len(faces[0]["landmarks"]) == 68
    info = json.loads(run(bin_dir / "fflm", "info", "--json", cwd=work).stdout)
    assert Path(info["file"]["path"]).name == "fflm-300w-68.safetensors" and info["scheme"]["points"] == 68
    assert "detector" in json.loads(run(bin_dir / "fflm", "info", "detector", "--json", cwd=work).stdout)
    assert "--sizes" in run(bin_dir / "fflm", "bench", "--help", cwd=work, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"}).stdout


def test_bench_runs_from_the_wheel_on_its_own_sample(installed):
    """`fflm bench` makes its portraits from the packaged sample and measures them in spawned processes."""
    bin_dir, work = installed
    report = json.loads(run(bin_dir / "fflm", "bench", "--sizes", "160", "--repeat", "1", "--frames", "0",
                            "--detector", "none", "--no-dlib", "--workdir", work / "bench", "--json", cwd=work).stdout)
    assert [(r["width"], r["height"], r["faces"]) for r in report["images"]] == [(160, 120, 1)]
