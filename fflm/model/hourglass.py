"""Hourglass networks (Newell et al. 2016) with regular or light (depthwise-separable) residual blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fflm.model.config import HourglassConfig
from fflm.model.layers import conv_bn_relu


class Residual(nn.Module):
    """Bottleneck residual block; `light` replaces the 3×3 convolution by depthwise 3×3 + pointwise 1×1.

    Post-activation (conv-BN-ReLU) so that BatchNorm folds into the convolutions at inference.
    """

    def __init__(self, cin: int, cout: int, light: bool = False) -> None:
        super().__init__()
        mid = cout // 2
        if light:
            spatial = nn.Sequential(conv_bn_relu(mid, mid, 3, groups=mid, relu=False), conv_bn_relu(mid, mid, 1))
        else:
            spatial = conv_bn_relu(mid, mid, 3)
        self.body = nn.Sequential(conv_bn_relu(cin, mid, 1), spatial, conv_bn_relu(mid, cout, 1, relu=False))
        self.skip = nn.Identity() if cin == cout else conv_bn_relu(cin, cout, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x), inplace=True)


def _blocks(width: int, n: int, light: bool) -> nn.Sequential:
    return nn.Sequential(*[Residual(width, width, light) for _ in range(n)])


class Hourglass(nn.Module):
    """One recursive hourglass of `depth` pooling levels at constant width."""

    def __init__(self, depth: int, width: int, blocks: int = 1, light: bool = False) -> None:
        super().__init__()
        self.up = _blocks(width, blocks, light)
        self.down = _blocks(width, blocks, light)
        self.inner = Hourglass(depth - 1, width, blocks, light) if depth > 1 else _blocks(width, blocks, light)
        self.out = _blocks(width, blocks, light)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.out(self.inner(self.down(F.max_pool2d(x, 2))))
        return self.up(x) + F.interpolate(low, scale_factor=2.0, mode="nearest")


class HourglassNet(nn.Module):
    """Stem + stacked hourglasses; returns one heatmap tensor [B, out, H/s, W/s] per stack."""

    def __init__(self, cin: int, cout: int, cfg: HourglassConfig) -> None:
        super().__init__()
        w, light = cfg.width, cfg.light
        # pool before the first residual block: at stride 4 a full-resolution block would cost as much as the hourglass
        stem: list[nn.Module] = [conv_bn_relu(cin, w // 2, 7 if cfg.stem_stride > 1 else 3, stride=min(cfg.stem_stride, 2))]
        if cfg.stem_stride == 4:
            stem.append(nn.MaxPool2d(2))
        stem += [Residual(w // 2, w, light), Residual(w, w, light)]
        self.stem = nn.Sequential(*stem)
        self.hourglasses = nn.ModuleList(Hourglass(cfg.depth, w, cfg.blocks, light) for _ in range(cfg.stacks))
        self.features = nn.ModuleList(nn.Sequential(Residual(w, w, light), conv_bn_relu(w, w, 1)) for _ in range(cfg.stacks))
        self.heads = nn.ModuleList(nn.Conv2d(w, cout, 1) for _ in range(cfg.stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(w, w, 1) for _ in range(cfg.stacks - 1))
        self.merge_heatmaps = nn.ModuleList(nn.Conv2d(cout, w, 1) for _ in range(cfg.stacks - 1))
        self.stride = cfg.stem_stride

    @torch.no_grad()
    def grow(self, trained: int) -> list[str]:
        """Start the stacks after the first `trained` as copies of the last trained one, fed through zeroed merge
        convolutions: each copy sees what that stack saw, so the network's output is unchanged (Net2Net-style
        growth; fresh stacks would start from noise and cost the final output many epochs). Returns the names
        (relative to this module) of the tensors set."""
        names = []
        for k in range(trained, len(self.hourglasses)):
            for group in ("hourglasses", "features", "heads"):
                mods = getattr(self, group)
                mods[k].load_state_dict(mods[trained - 1].state_dict())
                names += [f"{group}.{k}.{n}" for n in mods[k].state_dict()]
            for group in ("merge_features", "merge_heatmaps"):
                conv = getattr(self, group)[k - 1]
                conv.weight.zero_()
                conv.bias.zero_()
                names += [f"{group}.{k - 1}.weight", f"{group}.{k - 1}.bias"]
        return names

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for i, (hg, feat, head) in enumerate(zip(self.hourglasses, self.features, self.heads)):
            f = feat(hg(x))
            h = head(f)
            outputs.append(h)
            if i < len(self.merge_features):
                x = x + self.merge_features[i](f) + self.merge_heatmaps[i](h)
        return outputs
