"""Readying a trained torch module to serve: eval mode, no autograd, BatchNorm folded, channels-last.

Shared by the landmark model and the face detector; training never sees a module prepared here (its state
dict no longer matches a weights file once BatchNorm is folded).
"""

from __future__ import annotations

import torch
from torch import nn


def fuse_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every conv-BN pair of `conv_bn_relu` blocks into the convolution (inference only: the module
    then has no BatchNorm layers and its state dict no longer matches a weights file)."""
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
