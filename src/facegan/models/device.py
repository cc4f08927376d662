"""Which device a command runs on: one rule for every command, and one clear error for a missing GPU."""
from __future__ import annotations

import torch

DEVICE_HELP = "cpu, cuda, cuda:N, or auto (the GPU when PyTorch sees one, else the CPU)"


def resolve_device(name: str | torch.device) -> torch.device:
    """`auto` is cuda when available, else cpu; a GPU that is not there is a ValueError saying why, not a traceback."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device; use {DEVICE_HELP}") from None
    if device.type == "cuda":
        _check_cuda(device, name)
    return device


def _check_cuda(device: torch.device, name: str) -> None:
    if torch.version.cuda is None:
        raise ValueError(f"--device {name}: this PyTorch {torch.__version__} is built without CUDA (a CPU-only build); "
                         "use --device cpu, or install a CUDA build of PyTorch")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {name}: PyTorch sees no GPU (check the driver and CUDA_VISIBLE_DEVICES); "
                         "use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: there are only {torch.cuda.device_count()} GPU(s) (cuda:0 .. "
                         f"cuda:{torch.cuda.device_count() - 1})")
