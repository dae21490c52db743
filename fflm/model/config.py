"""Model configuration as data: serialised into the safetensors header and read back from it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from fflm.choices import VARIANTS
from fflm.scheme import IBUG68, LandmarkScheme


@dataclass
class HourglassConfig:
    """One hourglass network: width (channels), depth (pooling levels), stacks, and its stem stride.

    `stem_stride` (1, 2 or 4) is how much the stem shrinks the input before the hourglass, so the
    heatmaps are input/stem_stride pixels on a side; `light` swaps every 3×3 convolution for a
    depthwise-separable one (the paper's light variant).
    """

    width: int = 64
    depth: int = 4
    stacks: int = 1
    blocks: int = 1
    stem_stride: int = 4
    light: bool = False

    def __post_init__(self) -> None:
        if self.stem_stride not in (1, 2, 4):
            raise ValueError("stem_stride must be 1, 2 or 4")
        if self.width < 4 or self.width % 2 or self.depth < 1 or self.stacks < 1 or self.blocks < 1:
            raise ValueError(f"bad hourglass configuration {self}")


@dataclass
class ShapePriorConfig:
    """The shape model stored with the weights (fflm.shape): `components` PCA modes (0: none), fitted from the
    training annotations. At inference the points no regional network refines move `blend` of the way to
    its fit, in which they count `weight` against 1 for the refined points; `prior` is the strength of the
    Gaussian prior on the mode coefficients. Defaults chosen on 300-W val, confirmed on 300-W hires."""

    components: int = 0
    weight: float = 0.5
    blend: float = 0.5
    prior: float = 1e-3


@dataclass
class ModelConfig:
    """The whole landmark model: scheme, proxy and crop sizes, both networks, region geometry.

    `frame_scale`: the face frame (the square seen by the global stage) is this many times the larger side
    of the landmarks' tight box. `region_margin`: each region box extends its points' extent by this
    fraction on every side (then made square, at least `region_min_side` of the frame's side).
    `mirror_offset`: how far right of the mirror-symmetric position the training annotations sit, as a fraction
    of the face frame's side (`mirror_offset_unit` "frame": the frame is `frame_scale` times the larger side of
    the points' box, so the offset scales with the face and a k× larger image gives k× the coordinates); files
    from before the unit existed hold pixels ("px", kept as a constant). Mirrored training samples teach the
    network the symmetric position (an offset that flips sign with the image cannot be learnt), so the pipeline
    adds it back; measured on the training faces by `python -m fflm.train.calibrate`, 0 for a fresh run.
    """

    scheme: dict = field(default_factory=IBUG68.to_dict)
    proxy_size: int = 256
    crop_size: int = 128
    global_net: HourglassConfig = field(default_factory=HourglassConfig)
    regional_net: HourglassConfig = field(default_factory=lambda: HourglassConfig(width=64, depth=3, stem_stride=4))
    regional_stages: int = 1
    frame_scale: float = 1.5
    region_margin: float = 0.25
    region_min_side: float = 0.12
    temperature: float = 1.0
    learn_temperature: bool = True
    shape_prior: ShapePriorConfig = field(default_factory=ShapePriorConfig)
    mirror_offset: float = 0.0
    mirror_offset_unit: str = "frame"

    def __post_init__(self) -> None:
        if self.mirror_offset_unit not in ("frame", "px"):
            raise ValueError(f"mirror_offset_unit must be frame or px, got {self.mirror_offset_unit!r}")
        if isinstance(self.shape_prior, dict):
            self.shape_prior = ShapePriorConfig(**self.shape_prior)
        if isinstance(self.global_net, dict):
            self.global_net = HourglassConfig(**self.global_net)
        if isinstance(self.regional_net, dict):
            self.regional_net = HourglassConfig(**self.regional_net)
        self.landmark_scheme  # validates
        div = 2 ** self.global_net.depth * self.global_net.stem_stride
        if self.proxy_size % div:
            raise ValueError(f"proxy_size {self.proxy_size} must be a multiple of {div}")
        div = 2 ** self.regional_net.depth * self.regional_net.stem_stride
        if self.crop_size % div:
            raise ValueError(f"crop_size {self.crop_size} must be a multiple of {div}")
        if self.regional_stages < 1:
            raise ValueError("regional_stages must be at least 1")

    @property
    def landmark_scheme(self) -> LandmarkScheme:
        return LandmarkScheme.from_dict(self.scheme)

    def mirror_shift(self, points: np.ndarray) -> np.ndarray:
        """The x offset in pixels to add to each face's points [F, N, 2] (see `mirror_offset`)."""
        if self.mirror_offset_unit == "px":
            return np.full(len(points), self.mirror_offset)
        side = self.frame_scale * (points.max(axis=1) - points.min(axis=1)).max(axis=1)
        return self.mirror_offset * side

    @property
    def variant(self) -> str:
        return "light" if self.global_net.light else "regular"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            d = json.loads(text)
            if isinstance(d, dict) and "mirror_offset_unit" not in d:
                d["mirror_offset_unit"] = "px"  # written before the offset had a unit: pixels
            return cls(**d)
        except (TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"malformed model configuration: {e}") from None


def preset(variant: str = "regular", scheme: LandmarkScheme = IBUG68, crop_size: int = 128,
           width: int | None = None, stacks: int | None = None) -> ModelConfig:
    """The shipped recipes: `regular` (full convolutions) or `light` (depthwise-separable), `width` channels
    in every hourglass (None: the shipped 64), `stacks` hourglasses in the global network (None: 1)."""
    light, width = variant == "light", width or 64
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (regular or light)")
    return ModelConfig(
        scheme=scheme.to_dict(),
        crop_size=crop_size,
        global_net=HourglassConfig(width=width, depth=4, stem_stride=4, stacks=stacks or 1, light=light),
        regional_net=HourglassConfig(width=width, depth=3, stem_stride=4, light=light),
        shape_prior=ShapePriorConfig(components=6),
    )
