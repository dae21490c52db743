"""Landmark schemes as data: points, refined regions, flip pairs and normalisation points.

The 68-point iBUG/300-W scheme ships built in; any other scheme (e.g. 98-point WFLW) loads from JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fflm.errors import SchemeError


@dataclass(frozen=True)
class Region:
    """A named set of point indices refined together by one regional network."""

    name: str
    indices: tuple[int, ...]


@dataclass(frozen=True)
class LandmarkScheme:
    """Everything the model, training and evaluation need to know about a point set.

    `regions` are refined at full resolution; points in no region keep their global estimate.
    `flip_pairs` swap under a horizontal flip; `norm_points` are the two points whose distance
    normalises errors (outer eye corners for 300-W); `groups` name point sets for per-group metrics.
    """

    name: str
    num_points: int
    regions: tuple[Region, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    norm_points: tuple[int, int]
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.num_points
        if n < 2:
            raise SchemeError("a scheme needs at least 2 points")
        seen: set[int] = set()
        for region in self.regions:
            if not region.indices:
                raise SchemeError(f"region {region.name!r} has no points")
            for i in region.indices:
                if not 0 <= i < n:
                    raise SchemeError(f"region {region.name!r}: point {i} outside 0..{n - 1}")
                if i in seen:
                    raise SchemeError(f"point {i} belongs to more than one region")
                seen.add(i)
        flipped: set[int] = set()
        for a, b in self.flip_pairs:
            if not (0 <= a < n and 0 <= b < n) or a == b or a in flipped or b in flipped:
                raise SchemeError(f"bad flip pair ({a}, {b}): points are numbered 0..{n - 1}, each in one pair")
            flipped.update((a, b))
        a, b = self.norm_points
        if not (0 <= a < n and 0 <= b < n) or a == b:
            raise SchemeError(f"bad normalisation points {self.norm_points}")
        for name, idx in self.groups.items():
            if any(not 0 <= i < n for i in idx):
                raise SchemeError(f"group {name!r} has a point outside 0..{n - 1}")

    @property
    def refined_indices(self) -> list[int]:
        """All point indices refined by some region, in region order."""
        return [i for r in self.regions for i in r.indices]

    @property
    def unrefined_indices(self) -> list[int]:
        """Point indices no region refines (the global stage's alone), ascending."""
        refined = set(self.refined_indices)
        return [i for i in range(self.num_points) if i not in refined]

    def flip_permutation(self) -> list[int]:
        """perm such that points_flipped = points[perm] after mirroring x."""
        perm = list(range(self.num_points))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def region_mirrors(self) -> list[tuple[int, list[int]]] | None:
        """Per region i, (j, order): region i's crop mirrored is region j's view (eyes swap, nose and mouth
        stay), and j's point order[s] is the mirror of i's point s. None when some region's mirror image is
        no region (then the regional stage cannot use mirrored crops)."""
        perm = self.flip_permutation()
        out = []
        for region in self.regions:
            mirrored = {perm[i] for i in region.indices}
            match = [j for j, r in enumerate(self.regions) if set(r.indices) == mirrored]
            if not match:
                return None
            j = match[0]
            slot = {idx: m for m, idx in enumerate(self.regions[j].indices)}
            out.append((j, [slot[perm[i]] for i in region.indices]))
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["regions"] = [{"name": r.name, "indices": list(r.indices)} for r in self.regions]
        d["flip_pairs"] = [list(p) for p in self.flip_pairs]
        d["norm_points"] = list(self.norm_points)
        d["groups"] = {k: list(v) for k, v in self.groups.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LandmarkScheme":
        try:
            return cls(
                name=str(d.get("name", "custom")),
                num_points=int(d["num_points"]),
                regions=tuple(Region(str(r["name"]), tuple(int(i) for i in r["indices"])) for r in d.get("regions", [])),
                flip_pairs=tuple((int(a), int(b)) for a, b in d.get("flip_pairs", [])),
                norm_points=(int(d["norm_points"][0]), int(d["norm_points"][1])),
                groups={str(k): tuple(int(i) for i in v) for k, v in d.get("groups", {}).items()},
            )
        except (KeyError, TypeError, IndexError) as e:
            raise SchemeError(f"malformed landmark scheme: {e!r}") from None


def _r(a: int, b: int) -> tuple[int, ...]:
    return tuple(range(a, b))


#: The 68-point iBUG/300-W scheme. Index names follow the subject: "right eye" is the subject's right,
#: which is usually on the image's left (points 36-41).
IBUG68 = LandmarkScheme(
    name="ibug68",
    num_points=68,
    regions=(
        Region("right_eye", _r(17, 22) + _r(36, 42)),
        Region("left_eye", _r(22, 27) + _r(42, 48)),
        Region("nose", _r(27, 36)),
        Region("mouth", _r(48, 68)),
    ),
    flip_pairs=tuple((i, 16 - i) for i in range(8))
    + ((17, 26), (18, 25), (19, 24), (20, 23), (21, 22))
    + ((31, 35), (32, 34))
    + ((36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46))
    + ((48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)),
    norm_points=(36, 45),
    groups={
        "jaw": _r(0, 17),
        "brows": _r(17, 27),
        "nose": _r(27, 36),
        "eyes": _r(36, 48),
        "mouth": _r(48, 68),
    },
)

BUILTIN = {"68": IBUG68, "ibug68": IBUG68}


def load_scheme(spec: str | Path) -> LandmarkScheme:
    """A built-in scheme by name ("68") or a scheme JSON file (the format of `LandmarkScheme.to_dict`)."""
    key = str(spec)
    if key in BUILTIN:
        return BUILTIN[key]
    path = Path(spec)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SchemeError(f"no built-in scheme or file named {key!r}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise SchemeError(f"cannot read scheme file {key}: {e}") from None
    try:
        return LandmarkScheme.from_dict(data)
    except ValueError as e:
        raise SchemeError(f"{key}: {e}") from None
