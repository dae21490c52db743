"""The arithmetic the landmark networks run in: float32, or bfloat16 where the device computes it natively."""

from __future__ import annotations

import torch

from fflm.choices import PRECISIONS
from fflm.errors import UsageError


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or
    AMX. Elsewhere bfloat16 convolutions are emulated and slower than float32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:  # torch's own CPU probes; private, hence the guard (without them: float32)
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the networks' convolutions run in: `float32`, `bfloat16` (under autocast; the soft-argmax stays
    float32), or `auto` = bfloat16 where the device has it natively, else float32."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
    if precision == "auto":
        return torch.bfloat16 if native_bfloat16(device) else torch.float32
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def networks_in(dtype: torch.dtype, device: torch.device) -> torch.autocast:
    """The context the landmark networks run in for `dtype` (from compute_dtype): autocast to bfloat16, or plain
    float32 (autocast off). Shared by inference, validation and training."""
    return torch.autocast(device.type, dtype, enabled=dtype != torch.float32)
