"""Adaptive discriminator augmentation's controller: how strongly to augment, adjusted from the discriminator.

Every `interval` steps the mean sign of D's logits on real photos, r_t (StyleGAN2-ADA's overfitting
heuristic), is compared with `target`: above it the discriminator is too sure of the training photos, and
the augmentation probability p rises; below it p falls. p can go from 0 to 1 in `speed_kimg` thousand
images. p and the signal gathered since the last adjustment are saved in every checkpoint, so a resume
continues with exactly the same p (StyleGAN2-ADA resets it to 0 on resume).
"""
from __future__ import annotations

import math

from ..models import get_architecture
from ..models.augment import ADAPTIVE, AdaptiveAugment
from . import distributed

SMALL_DATA = 5000  # photos: below this `--augment auto` means ada


def augment_policy(augment: str, arch: str, images: int) -> str:
    """What `--augment` means for this run: `auto` is ada for a small photo set, else the architecture's default."""
    if augment != "auto":
        return augment
    return ADAPTIVE if images < SMALL_DATA else get_architecture(arch).augment


class AdaController:
    def __init__(self, pipe: AdaptiveAugment, target: float = 0.6, speed_kimg: float = 100.0, interval: int = 4):
        self.pipe, self.target, self.speed_kimg, self.interval = pipe, target, speed_kimg, interval
        self.signal_sum, self.signal_count = 0.0, 0

    @property
    def p(self) -> float:
        return self.pipe.p

    def observe(self, stats: dict, step: int, batch: int) -> None:
        """Add this step's r_t; every `interval` steps (counted over the whole run) adjust p."""
        self.signal_sum = stats["r_t"].detach().float() + self.signal_sum  # stays on the device: no sync per step
        self.signal_count += 1
        if step % self.interval:
            return
        signal = distributed.mean_over_ranks({"r_t": self.signal_sum / self.signal_count})["r_t"]
        change = math.copysign(batch * self.signal_count / (self.speed_kimg * 1000), float(signal) - self.target)
        self.pipe.p = min(max(self.pipe.p + change, 0.0), 1.0)
        self.signal_sum, self.signal_count = 0.0, 0

    def state_dict(self) -> dict:
        return {"p": self.pipe.p, "signal_sum": float(self.signal_sum), "signal_count": self.signal_count}

    def load_state_dict(self, state: dict) -> None:
        p, total, count = state.get("p"), state.get("signal_sum"), state.get("signal_count")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (p, total))
        if not (numbers and 0 <= p <= 1 and isinstance(count, int) and not isinstance(count, bool) and count >= 0):
            raise ValueError(f"augmentation state {state} is not a probability and a signal sum")
        self.pipe.p, self.signal_sum, self.signal_count = float(p), float(total), count
