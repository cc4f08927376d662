"""Latent vectors from integer seeds: one seed, one face, whatever the batch it is drawn in."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

MAX_SEED = 2**32 - 1


def latents_from_seeds(seeds: Iterable[int], z_dim: int, truncation: float = 1.0) -> Tensor:
    """Standard-normal latents, one per seed, scaled toward the mean latent (0) by `truncation`."""
    rows = []
    for seed in seeds:
        if not 0 <= int(seed) <= MAX_SEED:
            raise ValueError(f"seed {seed} is outside 0..{MAX_SEED}")
        generator = torch.Generator().manual_seed(int(seed))
        rows.append(torch.randn(z_dim, generator=generator))
    return torch.stack(rows) * truncation
