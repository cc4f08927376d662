"""ADA's controller against its rule: p moves by batch x steps / (ada_kimg x 1000) toward the signal's side of the target."""
import pytest
import torch

from facegan.models.augment import AdaptiveAugment
from facegan.training.ada import SMALL_DATA, AdaController, augment_policy


def observe(controller: AdaController, signs: list[float], batch: int = 32) -> None:
    for step, value in enumerate(signs, start=1):
        controller.observe({"r_t": torch.tensor(value)}, step, batch)


def test_p_rises_while_the_discriminator_is_too_sure_of_real_photos():
    controller = AdaController(AdaptiveAugment(), target=0.6, speed_kimg=1.0, interval=4)
    observe(controller, [0.9] * 8)
    assert controller.p == pytest.approx(2 * 32 * 4 / 1000)  # two adjustments of 4 steps of 32 images


def test_p_falls_below_the_target_and_stays_within_zero_and_one():
    controller = AdaController(AdaptiveAugment(0.05), target=0.6, speed_kimg=1.0, interval=4)
    observe(controller, [0.1] * 12)
    assert controller.p == 0.0
    controller.pipe.p = 0.99
    observe(controller, [1.0] * 12)
    assert controller.p == 1.0


def test_the_signal_is_averaged_over_the_interval():
    controller = AdaController(AdaptiveAugment(0.5), target=0.6, speed_kimg=1.0, interval=4)
    observe(controller, [1.0, 1.0, 0.0, 0.0])  # mean 0.5: below the target although two steps were above it
    assert controller.p < 0.5


def test_state_round_trips_and_bad_state_is_refused():
    controller = AdaController(AdaptiveAugment(), speed_kimg=1.0)
    observe(controller, [0.9] * 6)
    copy = AdaController(AdaptiveAugment())
    copy.load_state_dict(controller.state_dict())
    assert copy.state_dict() == controller.state_dict() and copy.signal_count == 2
    for bad in ({"p": 1.5, "signal_sum": 0.0, "signal_count": 0}, {"p": 0.1, "signal_sum": float("nan"), "signal_count": 0},
                {"p": 0.1, "signal_sum": 0.0, "signal_count": -1}, {"p": "0.1"}):
        with pytest.raises(ValueError):
            copy.load_state_dict(bad)


def test_auto_means_ada_for_a_small_photo_set_only():
    assert augment_policy("auto", "dcgan", SMALL_DATA - 1) == "ada"
    assert augment_policy("auto", "dcgan", SMALL_DATA) == "none"
    assert augment_policy("none", "dcgan", 10) == "none"
