"""Readying a trained torch module to serve: eval mode, no autograd, BatchNorm folded, channels-last, and several
networks of one architecture stacked into one grouped network.

Shared by the landmark model and the face detector; training never sees a module prepared here (its state
dict no longer matches a weights file once BatchNorm is folded).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def fuse_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every conv-BN pair (a Sequential that starts Conv2d, BatchNorm2d: the conv-BN-ReLU blocks of both
    networks) into the convolution (inference only: the module then has no BatchNorm layers and its state
    dict no longer matches a weights file)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for m in module.modules():
        if isinstance(m, nn.Sequential) and len(m) >= 2 and isinstance(m[0], nn.Conv2d) and isinstance(m[1], nn.BatchNorm2d):
            m[0] = fuse_conv_bn_eval(m[0].eval(), m[1].eval())
            m[1] = nn.Identity()
    return module


def for_inference(module: nn.Module) -> nn.Module:
    """`module` in eval mode without gradients, BatchNorm folded (~30 % faster on a CPU) and its weights
    channels-last (NHWC convolutions: ~20-40 % faster on a CPU). In place; returns it."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    fuse_batchnorm(module)
    return module.to(memory_format=torch.channels_last)


def stack_convnets(nets: list[nn.Module]) -> nn.Module:
    """R networks of one architecture (convolutions, element-wise and per-channel layers only) as one
    network with R× the channels, every convolution grouped R ways: input [B, R·C, H, W] (network r's
    input in channels r·C…), each output [B, R·C', …] likewise. Convolutions whose channel counts differ
    between the networks (heads with another number of points) are zero-padded to the largest; slice the
    outputs with the counts of each. One call of bigger operations instead of R calls of small ones: the
    four regional networks run ~25 % faster on two CPU threads. Fold BatchNorm first."""
    stacked = copy.deepcopy(nets[0])
    per_net = [dict(n.named_modules()) for n in nets]
    r = len(nets)
    for name, conv in list(stacked.named_modules()):
        if isinstance(conv, nn.BatchNorm2d):
            raise ValueError("fold BatchNorm before stacking")
        if not isinstance(conv, nn.Conv2d):
            continue
        convs = [m[name] for m in per_net]
        cin, cout, g = max(c.in_channels for c in convs), max(c.out_channels for c in convs), conv.groups
        if g > 1 and any((c.in_channels, c.out_channels) != (cin, cout) for c in convs):
            raise ValueError(f"{name}: grouped convolutions must agree in shape to be stacked")
        ref = conv.weight
        weight = ref.new_zeros((cout * r, cin // g, *conv.kernel_size))
        bias = ref.new_zeros(cout * r)
        for k, c in enumerate(convs):
            weight[k * cout : k * cout + c.out_channels, : c.in_channels // g] = c.weight
            if c.bias is not None:
                bias[k * cout : k * cout + c.out_channels] = c.bias
        new = nn.Conv2d(cin * r, cout * r, conv.kernel_size, conv.stride, conv.padding, conv.dilation, g * r,
                        bias=True, device=ref.device, dtype=ref.dtype)
        new.weight.data.copy_(weight)
        new.bias.data.copy_(bias)
        new.requires_grad_(False)
        parent, _, attr = name.rpartition(".")
        setattr(stacked.get_submodule(parent) if parent else stacked, attr, new)
    return stacked.eval().to(memory_format=torch.channels_last)
