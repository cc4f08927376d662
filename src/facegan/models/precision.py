"""One precision policy for every command that runs a network: fp32, or bfloat16 autocast where it pays.

`train`, `generate`, `interpolate`, `eval`, `serve` and the Python API all take `precision`
(auto, fp32 or bf16) and resolve it here, with the same rule and the same messages.
"""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_HELP = ("arithmetic: fp32, bf16 (bfloat16 autocast: faster on CPUs with AVX-512 BF16 or AMX and on GPUs "
                  "from Ampere on; results differ from fp32 by about a grey level) or auto (bf16 where the "
                  "hardware runs it natively, else fp32)")


class EmulatedBF16Error(ValueError):
    """bf16 was asked for on hardware that would only emulate it (many times slower than fp32)."""


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bfloat16 natively (CPUs with AVX-512 BF16 or AMX; CUDA GPUs from Ampere on).

    Elsewhere bfloat16 is emulated, and a training step under bf16 autocast runs many times slower than in fp32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device) -> str:
    """fp32 or bf16: `auto` is bf16 where the hardware runs it natively; bf16 elsewhere is an EmulatedBF16Error."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and not native_bf16(device):
        raise EmulatedBF16Error(f"--precision bf16: {emulation_reason(device)}, many times slower than fp32; "
                                "use --precision fp32 (or auto)")
    return precision


def emulation_reason(device: torch.device) -> str:
    return (f"this {device.type.upper()} has no native bfloat16 (on CPUs: AVX-512 BF16 or AMX), "
            "so bf16 would be emulated")


def autocast(device: torch.device, precision: str):
    """bfloat16 autocast on `device` for a resolved precision of bf16, else a context that changes nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
