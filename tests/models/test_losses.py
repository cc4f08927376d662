"""The GAN objectives, R1 and the training options that choose them."""
import math

import pytest
import torch
import torch.nn.functional as F

from facegan.models import build_discriminator, build_loss, get_architecture
from facegan.models.losses import OBJECTIVES, GANLoss, LossSettings
from facegan.training.config import TrainConfig


class Constant(torch.nn.Module):
    """A 'discriminator' whose logit for each image is its mean pixel, so losses can be worked out by hand."""

    def forward(self, x):
        return x.mean(dim=[1, 2, 3])


def logits_of(values):
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()


REAL, FAKE = [2.0, -1.0], [0.5, -3.0]


@pytest.mark.parametrize("objective, d_expected, g_expected", [
    ("non-saturating",
     lambda r, f: F.binary_cross_entropy_with_logits(r, torch.ones(2)) + F.binary_cross_entropy_with_logits(f, torch.zeros(2)),
     lambda f: F.binary_cross_entropy_with_logits(f, torch.ones(2))),
    ("least-squares",
     lambda r, f: 0.5 * (((r - 1) ** 2).mean() + (f ** 2).mean()),
     lambda f: 0.5 * ((f - 1) ** 2).mean()),
    ("hinge",
     lambda r, f: torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean(),
     lambda f: -f.mean()),
])
def test_each_objective_computes_its_textbook_formula(objective, d_expected, g_expected):
    loss = GANLoss(LossSettings(objective))
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    d_loss, stats = loss.discriminator_loss(Constant(), logits_of(REAL), logits_of(FAKE), step=1)
    g_loss, _ = loss.generator_loss(Constant(), logits_of(FAKE), logits_of(REAL), step=1)
    assert float(d_loss) == pytest.approx(float(d_expected(real, fake)), rel=1e-6)
    assert float(g_loss) == pytest.approx(float(g_expected(fake)), rel=1e-6)
    assert "r1" not in stats


def test_ada_signal_counts_reals_above_the_objectives_midpoint():
    real = logits_of([0.7, 0.3, 0.6, -2.0])  # least-squares calls 0.7 and 0.6 real, 0.3 and -2 fake
    _, stats = GANLoss(LossSettings("least-squares")).discriminator_loss(Constant(), real, real, step=1)
    assert float(stats["r_t"]) == 0.0
    _, stats = GANLoss(LossSettings("hinge")).discriminator_loss(Constant(), real, real, step=1)
    assert float(stats["r_t"]) == 0.5


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_every_objective_trains_both_networks(objective):
    config = get_architecture("dcgan").config(32, width=4)
    D, loss = build_discriminator(config), build_loss(config, "none", objective=objective)
    fake = (torch.rand(4, 3, 32, 32) * 2 - 1).requires_grad_(True)
    d_loss, _ = loss.discriminator_loss(D, torch.rand(4, 3, 32, 32) * 2 - 1, fake.detach(), step=1)
    d_loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.parameters() if p.requires_grad)
    g_loss, _ = loss.generator_loss(D, fake, None, step=1)
    g_loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_options_replace_the_architectures_loss_settings():
    dcgan, resnet = get_architecture("dcgan").config(32, width=4), get_architecture("resnet").config(32, width=4)
    assert build_loss(dcgan).r1_gamma == 0 and build_loss(resnet).r1_gamma == 0.05
    chosen = build_loss(dcgan, objective="hinge", r1_gamma=0.5)
    assert chosen.objective is OBJECTIVES["hinge"] and chosen.r1_gamma == 0.5
    assert build_loss(resnet, r1_gamma=0.0).r1_gamma == 0  # 0 turns R1 off, it is not "unset"


def test_r1_gamma_adds_the_penalty_to_any_objective():
    loss = GANLoss(LossSettings("hinge", r1_gamma=1.0, r1_every=4))
    real, fake = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    with_r1, stats = loss.discriminator_loss(Constant(), real, fake, step=8)
    without, stats_off = loss.discriminator_loss(Constant(), real, fake, step=9)
    # D = mean of 48 pixels: its gradient is 1/48 at each pixel, so |grad|^2 = 48 / 48^2 for every image.
    assert float(stats["r1"]) == pytest.approx(1 / 48, rel=1e-5) and "r1" not in stats_off
    assert float((with_r1 - without).detach()) == pytest.approx(1 / 48 * 1.0 / 2 * 4, rel=1e-5)


def test_unknown_objective_is_named_with_the_choices():
    with pytest.raises(ValueError, match="unknown loss 'wasserstein'; choose one of: non-saturating, least-squares, hinge"):
        GANLoss(LossSettings("wasserstein"))


@pytest.mark.parametrize("options, message", [
    ({"r1_gamma": -1.0}, "--r1-gamma must be finite and not negative"),
    ({"r1_gamma": math.nan}, "--r1-gamma must be finite"),
    ({"beta1": 1.0}, "--beta1 must be at least 0 and below 1"),
    ({"beta1": -0.1}, "--beta1 must be at least 0 and below 1"),
])
def test_bad_loss_and_optimiser_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.create("photos", **options).validate()
