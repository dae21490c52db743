"""fflm's built-in face detector network: a tiny fully-convolutional centre-and-size model.

A MobileNet-like backbone (depthwise-separable blocks) down to stride 32, an FPN-like top-down merge, and
two heads: stride 8 for small faces and stride 32 for large ones. Each head predicts, per cell, a face-centre
logit and the distances (left, top, right, bottom) from the cell centre to the box edges, in units of the
stride on a log scale. Decoding (peaks, boxes, NMS) lives in `fflm.detect.decode`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from fflm.detect.verifier import FaceVerifier, VerifierConfig
from fflm.model.layers import conv_bn_relu


@dataclass
class DetectorConfig:
    """Everything needed to rebuild the network (stored in the weights file's header)."""

    widths: tuple[int, ...] = (16, 24, 32, 48, 64)  # channels at strides 2, 4, 8, 16, 32
    fpn: int = 32
    strides: tuple[int, ...] = (8, 32)
    proxy: int = 640  # long side of the detector's input image at inference
    mean: tuple[float, float, float] = (123.7, 116.3, 103.5)
    std: float = 58.0
    extra: dict = field(default_factory=dict)
    verifier: dict = field(default_factory=dict)  # a VerifierConfig as a dict: the second stage; empty: none

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "DetectorConfig":
        d = json.loads(text)
        for k in ("widths", "strides", "mean"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


class SepBlock(nn.Module):
    """Depthwise k×k then pointwise 1×1; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int = 1, k: int = 3) -> None:
        super().__init__()
        self.dw = conv_bn_relu(cin, cin, k, stride, groups=cin)
        self.pw = conv_bn_relu(cin, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))
        return x + y if self.residual else y


class Head(nn.Module):
    """Centre logit (1) and log box distances (4) per cell."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = SepBlock(c, c)
        self.out = nn.Conv2d(c, 5, 1)
        nn.init.constant_(self.out.bias[:1], -4.6)  # prior 0.01: the focal loss starts calm (CenterNet)
        nn.init.constant_(self.out.bias[1:], 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class FaceNet(nn.Module):
    """Input: float RGB [B, 3, H, W] in 0..255 (H, W multiples of 32 are best). Output: one [B, 5, h, w] map per
    stride in `config.strides`."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or DetectorConfig()
        w = c.widths
        self.s2 = conv_bn_relu(3, w[0], 3, 2)
        self.s4 = nn.Sequential(SepBlock(w[0], w[1], 2), SepBlock(w[1], w[1]))
        self.s8 = nn.Sequential(SepBlock(w[1], w[2], 2), SepBlock(w[2], w[2]))
        self.s16 = nn.Sequential(SepBlock(w[2], w[3], 2), SepBlock(w[3], w[3]))
        self.s32 = nn.Sequential(SepBlock(w[3], w[4], 2), SepBlock(w[4], w[4], k=5), SepBlock(w[4], w[4], k=5))
        self.lat = nn.ModuleList([nn.Conv2d(w[i], c.fpn, 1) for i in (2, 3, 4)])
        self.heads = nn.ModuleDict({str(s): Head(c.fpn) for s in c.strides})
        # the second stage (fflm.detect.verifier) that re-scores the boxes decoded from the maps, when configured
        self.verifier = FaceVerifier(VerifierConfig.from_dict(c.verifier), c.mean, c.std) if c.verifier else None
        self.register_buffer("mean", torch.tensor(c.mean).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The first stage's maps (the verifier runs on decoded boxes: see fflm.detect.run.infer)."""
        return self.run_normalised((x - self.mean) / self.config.std)

    def run_normalised(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The maps of an input already normalised as (RGB - mean) / std (see `fflm.detect.run.prepare`)."""
        c8 = self.s8(self.s4(self.s2(x)))
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        p32 = self.lat[2](c32)
        p16 = self.lat[1](c16) + F.interpolate(p32, size=c16.shape[-2:], mode="nearest")
        p8 = self.lat[0](c8) + F.interpolate(p16, size=c8.shape[-2:], mode="nearest")
        levels = {8: p8, 16: p16, 32: p32}
        return [self.heads[str(s)](levels[s]) for s in self.config.strides]
