"""The data the benchmark scripts read (they are scripts, not part of the package, and are not timed here)."""

import importlib.util
from pathlib import Path

from conftest import SHARED, needs_shared

from fflm.train.data import Sample

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _landmarks_benchmark():
    spec = importlib.util.spec_from_file_location("landmarks_300w", BENCH / "landmarks_300w.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dlib_heldout_marks_its_76_faces_by_stem(tmp_path):
    bench = _landmarks_benchmark()
    samples = [Sample(tmp_path / "helen_test_2980607773_1.jpg", None), Sample(tmp_path / "helen_test_1_1.jpg", None),
               Sample(tmp_path / "lfpw_test_image_0003.png", None)]
    assert bench.dlib_heldout(samples).tolist() == [True, False, True]


@needs_shared
def test_dlib_heldout_faces_are_40_helen_and_36_lfpw_test_faces_of_val():
    bench = _landmarks_benchmark()
    val = SHARED / "data" / "300w" / "val"
    stems = {p.stem for p in val.glob("*.pts")}
    samples = [Sample(val / f"{s}.jpg", None) for s in sorted(stems)]
    held = [s.image.stem for s, h in zip(samples, bench.dlib_heldout(samples)) if h]
    assert len(held) == 76 and len(stems) == 554
    assert sum(s.startswith("helen_test_") for s in held) == 40
    assert sum(s.startswith("lfpw_test_") for s in held) == 36
