"""How networks run fastest: channels-last memory layout, which oneDNN (CPU) and tensor cores (CUDA) prefer,
and bfloat16 autocast."""
from __future__ import annotations

import contextlib

import torch
from torch import nn


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store the module's 4-D weights channels-last (in place); convolutions then work in NHWC end to end.

    Inputs may stay contiguous NCHW: a convolution with channels-last weights converts its input
    once and returns channels-last outputs. Values and shapes are unchanged.
    """
    return module.to(memory_format=torch.channels_last)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bfloat16 natively (CPUs with AVX-512 BF16 or AMX; CUDA GPUs from Ampere on).

    Elsewhere bfloat16 is emulated, and a training step under bf16 autocast runs many times slower than in fp32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on `device` when `enabled`, else a context that changes nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()
