"""How networks run fastest: channels-last memory layout, which oneDNN (CPU) and tensor cores (CUDA) prefer."""
from __future__ import annotations

import torch
from torch import nn


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store the module's 4-D weights channels-last (in place); convolutions then work in NHWC end to end.

    Inputs may stay contiguous NCHW: a convolution with channels-last weights converts its input
    once and returns channels-last outputs. Values and shapes are unchanged.
    """
    return module.to(memory_format=torch.channels_last)
