"""The layers the networks share: the conv-BN-ReLU block; heatmaps to points (channel-wise spatial softmax,
soft-argmax and a per-point confidence); and RoIAlign.

RoIAlign is written on `grid_sample`: bilinear, differentiable in the image and the box, aligned.

Box convention as in fflm.geometry (continuous, pixel centres at integers). Output pixel u of an S-wide
crop averages k sub-samples at x0 + (u + (j + 0.5)/k)·(x1 - x0)/S, j = 0..k-1, so a region much larger
than the crop is averaged rather than point-sampled (no aliasing when a 1500-px eye becomes 128 px).
Written here rather than taken from torchvision, which fflm does not depend on.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fflm.geometry import cell_centres


# ---------------------------------------------------------------------------------------------- building block

def conv_bn_relu(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    """Convolution (padding k // 2, no bias), BatchNorm and optionally ReLU: the block both the hourglasses and the
    detector are built of; fflm.inference folds its BatchNorm into the convolution."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


# ------------------------------------------------------------------------------------------ heatmaps to points

def soft_argmax(logits: torch.Tensor, beta: torch.Tensor | float = 1.0, stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial softmax of logits [B, N, h, w] (temperature 1/beta) and its expectation.

    Returns points [B, N, 2] in input pixels (0-based centres) and the probability maps [B, N, h, w].
    """
    b, n, h, w = logits.shape
    dtype = torch.promote_types(logits.dtype, torch.float32)  # half/bfloat16 logits: softmax in float32
    prob = torch.softmax((logits * beta).reshape(b, n, h * w).to(dtype), dim=-1).reshape(b, n, h, w)
    xs, ys = (cell_centres(n, stride, logits.device, prob.dtype) for n in (w, h))
    x = (prob.sum(dim=2) * xs).sum(dim=-1)
    y = (prob.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1), prob


def confidence(prob: torch.Tensor, points: torch.Tensor, stride: int = 1, radius: float = 1.5) -> torch.Tensor:
    """Fraction of each heatmap's probability mass within `radius` heatmap cells of its soft-argmax point.

    Near 1: a single sharp peak (the point is well determined). Low: a diffuse or multi-modal map, as on
    occluded, blurred or out-of-frame points. Values lie in [0, 1].

    Only the cells the disc can reach are read: a window of floor(2·radius) + 1 cells a side from the first cell
    within reach (written here because no torch operator sums a map over a disc about a per-map point; masking
    whole maps cost more than the soft-argmax itself).
    """
    b, n, h, w = prob.shape
    k = math.floor(2 * radius) + 1
    cells = (points.to(prob.dtype) - (stride - 1) / 2) / stride  # the point in cell units: cell j's centre is j
    reach = torch.ceil(cells - radius)[..., None] + torch.arange(k, device=prob.device, dtype=prob.dtype)  # [B, N, 2, k]
    near = (reach - cells[..., None]) ** 2
    inside = (near[:, :, 1, :, None] + near[:, :, 0, None, :]) <= radius**2
    jx, jy = reach[:, :, 0], reach[:, :, 1]
    inside &= ((jy >= 0) & (jy < h))[..., :, None] & ((jx >= 0) & (jx < w))[..., None, :]
    index = jy.clamp(0, h - 1).long()[..., :, None] * w + jx.clamp(0, w - 1).long()[..., None, :]
    mass = prob.reshape(b, n, h * w).gather(2, index.reshape(b, n, k * k)).reshape(b, n, k, k)
    return (mass * inside).sum(dim=(2, 3)).clamp(0.0, 1.0)


class SoftArgmax(nn.Module):
    """Soft-argmax with a configured or learnable temperature (learned as log beta)."""

    def __init__(self, temperature: float = 1.0, learnable: bool = True) -> None:
        super().__init__()
        log_beta = torch.tensor(-math.log(temperature))
        if learnable:
            self.log_beta = nn.Parameter(log_beta)
        else:
            self.register_buffer("log_beta", log_beta)

    def forward(self, logits: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        return soft_argmax(logits, self.log_beta.exp(), stride)


# ------------------------------------------------------------------------------------------------------ RoIAlign

def sampling_ratio(boxes: torch.Tensor, size: tuple[int, int], max_ratio: int = 16) -> int:
    """Sub-samples per output pixel and axis: enough that each covers at most one input pixel."""
    if boxes.numel() == 0:
        return 1
    extent = torch.maximum((boxes[:, 2] - boxes[:, 0]) / size[0], (boxes[:, 3] - boxes[:, 1]) / size[1])
    return int(min(max(math.ceil(float(extent.max())), 1), max_ratio))


def roi_align(
    images: torch.Tensor,
    boxes: torch.Tensor,
    batch_index: torch.Tensor | None = None,
    size: int | tuple[int, int] = 128,
    ratio: int | None = None,
    inside: tuple[float, float, float, float] | None = None,
) -> torch.Tensor:
    """Crops [K, C, S_h, S_w] of images [N, C, H, W] under boxes [K, 4] (image `batch_index[k]`; every box
    on the first image when None).

    Outside the image counts as zero. `ratio` None picks the sub-sampling from the largest box (which
    reads the boxes back to the host: pass it when they live on a GPU). `inside` (x0, y0, x1, y1), for
    images that are windows of a larger picture: the picture's extent in the images' pixel coordinates.
    Samples within it repeat the images' edge pixels rather than blend with black over the last half pixel
    (a half pixel of a shrunk window is many pixels of the picture); samples outside it are zero.
    """
    sw, sh = (size, size) if isinstance(size, int) else size
    k_boxes = boxes.shape[0]
    k = ratio or sampling_ratio(boxes.detach(), (sw, sh))
    _, c, h, w = images.shape
    if k_boxes == 0:
        return images.new_zeros((0, c, sh, sw))
    t_x = (torch.arange(sw * k, device=boxes.device, dtype=boxes.dtype) + 0.5) / (sw * k)
    t_y = (torch.arange(sh * k, device=boxes.device, dtype=boxes.dtype) + 0.5) / (sh * k)
    xs = boxes[:, 0:1] + t_x[None] * (boxes[:, 2:3] - boxes[:, 0:1])  # [K, Sw·k]
    ys = boxes[:, 1:2] + t_y[None] * (boxes[:, 3:4] - boxes[:, 1:2])
    gx = (xs + 0.5) * (2.0 / w) - 1.0  # grid_sample, align_corners=False: -1 is the left edge of pixel 0
    gy = (ys + 0.5) * (2.0 / h) - 1.0
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1).to(images.dtype)
    padding = "zeros" if inside is None else "border"
    if batch_index is None:  # all boxes on the one image: a single call, no host synchronisation
        s = F.grid_sample(images[:1], grid.reshape(1, k_boxes * sh * k, sw * k, 2), mode="bilinear",
                          padding_mode=padding, align_corners=False)
        out = s.reshape(c, k_boxes, sh * k, sw * k).transpose(0, 1)
    else:  # one grid_sample per source image, with all its boxes stacked along the grid's height
        out = images.new_empty((k_boxes, c, sh * k, sw * k))
        for n in torch.unique(batch_index).tolist():
            sel = (batch_index == n).nonzero().flatten()
            g = grid[sel].reshape(1, len(sel) * sh * k, sw * k, 2)
            s = F.grid_sample(images[n : n + 1], g, mode="bilinear", padding_mode=padding, align_corners=False)
            out = out.index_copy(0, sel, s.reshape(c, len(sel), sh * k, sw * k).transpose(0, 1))
    if inside is not None:  # each sub-sample weighted by the part of its cell inside the picture
        in_x = cell_coverage(xs, (boxes[:, 2:3] - boxes[:, 0:1]) / (sw * k), inside[0], inside[2]).to(out.dtype)
        in_y = cell_coverage(ys, (boxes[:, 3:4] - boxes[:, 1:2]) / (sh * k), inside[1], inside[3]).to(out.dtype)
        out = out * (in_y[:, None, :, None] * in_x[:, None, None, :])
    return F.avg_pool2d(out, k) if k > 1 else out


def cell_coverage(centres, step, lo: float, hi: float):  # noqa: ANN001, ANN201 (tensors or arrays alike)
    """Fraction of each cell [c - step/2, c + step/2] (one sub-sample's share of the box) within [lo, hi]; torch
    tensors (roi_align) or numpy arrays (fflm.crop)."""
    half = step / 2
    lib = torch if isinstance(centres, torch.Tensor) else np
    return lib.clip((lib.clip(centres + half, None, hi) - lib.clip(centres - half, lo, None)) / step, 0.0, 1.0)
