"""Named Landmarker settings: `Landmarker(preset="fast")` and `--fast` choose the weights and the passes together,
so a user trades accuracy for speed in one word instead of knowing which options go with which file."""

from __future__ import annotations

from dataclasses import dataclass

from fflm.errors import UsageError


@dataclass(frozen=True)
class Preset:
    """What a preset sets: the shipped weights (a name of fflm.weights.SHIPPED) and whether the mirrored
    passes run. Arguments given to the Landmarker explicitly win over the preset's."""

    weights: str
    flip: bool


PRESETS = {
    "default": Preset("300w-68", flip=True),
    # a 192 px proxy and 96 px crops (distilled from the default file), one pass: see the model card
    "fast": Preset("300w-68-fast", flip=False),
}


def preset(name: str) -> Preset:
    """The preset called `name`; an unknown name is a usage error that lists the known ones."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r} ({', '.join(PRESETS)})")
    return PRESETS[name]
