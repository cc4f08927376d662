"""The training step's parts against independent formulas: the EMA, mirroring, budgets, DiffAugment in the losses."""
import copy

import numpy as np
import pytest
import torch

import facegan
from facegan.models import build_loss
from facegan.models import losses as losses_module
from facegan.training import TrainConfig
from facegan.training.loop import budget_reason, ema_beta, real_batch, update_ema
from facegan.training.state import create_state, model_config

CPU = torch.device("cpu")


@pytest.fixture
def prepared(face_folder, tmp_path):
    return facegan.prepare(face_folder, size=32, out=tmp_path / "prepared", workers=1, progress=False)


def state_for(prepared, **options):
    config = TrainConfig.create(str(prepared.root), size=32, width=8, batch=8, progress=False, **options)
    return create_state(config, model_config(config), prepared.split_indices("all"), CPU)


def test_the_ema_update_is_the_exponential_moving_average_of_the_parameters_and_copies_the_buffers(prepared):
    state = state_for(prepared, arch="dcgan", ema_kimg=0.01, ema_rampup=0)
    with torch.no_grad():
        for p in state.G.parameters():
            p.add_(torch.randn_like(p))
        for b in state.G.buffers():
            if b.is_floating_point():
                b.add_(1.5)  # BatchNorm running statistics
    before = copy.deepcopy(state.G_ema.state_dict())
    state.images_seen = 800
    beta = 0.5 ** (8 / 10)  # half-life 10 images (ema_kimg 0.01), batch 8
    assert ema_beta(state.config, state.batch, state.images_seen) == pytest.approx(beta)
    update_ema(state)
    parameters = dict(state.G.named_parameters())
    buffers = dict(state.G.named_buffers())
    for name, value in state.G_ema.state_dict().items():
        if name in parameters:
            expected = beta * before[name] + (1 - beta) * parameters[name].detach()
            assert torch.allclose(value, expected, atol=1e-6), name
        else:
            assert torch.equal(value, buffers[name]), f"buffer {name} is copied, not averaged"
    assert any(name not in parameters for name in before), "dcgan's G has BatchNorm buffers to check"


def test_the_ema_half_life_ramps_up_with_the_images_seen(prepared):
    state = state_for(prepared, ema_kimg=10.0, ema_rampup=0.05)
    assert ema_beta(state.config, 8, 1000) == pytest.approx(0.5 ** (8 / 50))  # 5 % of 1,000 images
    assert ema_beta(state.config, 8, 10**7) == pytest.approx(0.5 ** (8 / 10_000))  # capped at ema_kimg


@pytest.mark.parametrize("mirror", [True, False])
def test_faces_are_mirrored_at_random_only_with_mirror(prepared, mirror):
    torch.manual_seed(0)
    state = state_for(prepared, mirror=mirror)
    indices = state.order.state_dict()
    batch = real_batch(state, prepared, CPU)
    state.order.load_state_dict(indices)
    plain = prepared.load_batch(state.order.next_batch())
    flipped = [not torch.equal(a, b) and torch.equal(a, b.flip(2)) for a, b in zip(batch, plain)]
    same = [torch.equal(a, b) for a, b in zip(batch, plain)]
    assert all(f or s for f, s in zip(flipped, same))
    assert any(flipped) == mirror and all(same) == (not mirror)


def test_kimg_budget_counts_images_and_a_resume_takes_a_new_budget(face_folder, prepared, tmp_path):
    run = facegan.train(face_folder, out=str(tmp_path / "run"), arch="dcgan", size=32, width=8, batch=8, kimg=0.02,
                        workers=1, progress=False, min_size=16, sample_every=100, checkpoint_every=100)
    assert (run.stopped_by, run.images_seen, run.step) == ("kimg", 24, 3)  # the first step past 20 images
    more = facegan.train(resume=tmp_path / "run", kimg=0.04, progress=False)
    assert (more.stopped_by, more.images_seen, more.step) == ("kimg", 40, 5)
    state = state_for(prepared, steps=2)
    assert budget_reason(state.config, state, started=0.0) is None
    state.step = 2
    assert budget_reason(state.config, state, started=0.0) == "steps"


def test_diffaugment_transforms_everything_the_discriminator_sees(prepared, monkeypatch):
    seen = []
    real_augment = losses_module.diff_augment
    monkeypatch.setattr(losses_module, "diff_augment",
                        lambda images, policy: seen.append((images.shape[0], tuple(policy))) or real_augment(images, policy))
    state = state_for(prepared, arch="resnet", augment="color,translation")
    loss = build_loss(state.model, "color,translation")
    real = prepared.load_batch(np.arange(8))
    fake = state.G(torch.randn(8, state.model.z_dim))
    loss.discriminator_loss(state.D, real, fake.detach(), step=1)
    loss.generator_loss(state.D, fake, real, step=1)
    assert seen == [(8, ("color", "translation"))] * 3, "real and fake in the D phase, fake in the G phase"
    seen.clear()
    build_loss(state.model, "none").discriminator_loss(state.D, real, fake.detach(), step=1)
    assert seen == []
