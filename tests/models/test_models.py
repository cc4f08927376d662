import pytest
import torch

from facegan.models import (
    ARCHITECTURES,
    Architecture,
    build_discriminator,
    build_generator,
    build_loss,
    get_architecture,
    latents_from_seeds,
    register,
)

# Parameter counts (generator, discriminator) at each size with default widths.
# dcgan at 64 px matches the pytorch/examples DCGAN exactly (3,576,704 / 2,765,568).
PARAMETER_COUNTS = {
    ("mlp", 32): (3_834_624, 3_803_137),
    ("mlp", 64): (13_281_024, 13_240_321),
    ("mlp", 128): (51_066_624, 50_989_057),
    ("dcgan", 32): (1_068_928, 663_296),
    ("dcgan", 64): (3_576_704, 2_765_568),
    ("dcgan", 128): (7_772_032, 6_960_896),
    ("resnet", 32): (420_755, 307_473),
    ("resnet", 64): (1_160_339, 1_228_689),
    ("resnet", 128): (2_406_035, 2_474_385),
    ("resnet-fast", 32): (420_755, 301_121),  # resnet's generator; D's full-resolution block becomes one 4x4 conv
    ("resnet-fast", 64): (1_160_339, 1_222_337),
    ("resnet-fast", 128): (2_406_035, 2_468_033),
    ("seed", 32): (545_859, 519_425),  # the same as the seed report's Keras model (tests/models/test_seed.py)
    ("seed", 64): (545_859, 522_497),
    ("seed", 128): (545_859, 534_785),
}


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("arch,size", sorted(PARAMETER_COUNTS))
def test_shapes_ranges_and_parameter_counts(arch, size):
    config = get_architecture(arch).config(size)
    G, D = build_generator(config), build_discriminator(config)
    z = torch.randn(3, config.z_dim)
    images = G(z)
    assert images.shape == (3, 3, size, size)
    assert images.min() >= -1 and images.max() <= 1
    logits = D(images)
    assert logits.shape == (3,)
    assert torch.isfinite(logits).all()
    assert (count(G), count(D)) == PARAMETER_COUNTS[(arch, size)]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_loss_phases_train_both_networks(arch):
    config = get_architecture(arch).config(32, width=8)
    G, D, loss = build_generator(config), build_discriminator(config), build_loss(config)
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    fake = G(torch.randn(4, config.z_dim))
    loss_d, stats_d = loss.discriminator_loss(D, real, fake.detach(), step=0)
    loss_d.backward()
    assert all(p.grad is not None for p in D.parameters())
    assert all(p.grad is None for p in G.parameters())
    loss_g, stats_g = loss.generator_loss(D, fake, real, step=0)
    loss_g.backward()
    assert all(p.grad is not None for p in G.parameters())
    assert {"loss_d", "d_real", "d_fake"} <= set(stats_d) and "loss_g" in stats_g
    assert 0 < float(stats_d["d_real"]) < 1


def test_unknown_architecture_lists_choices():
    with pytest.raises(ValueError, match="unknown architecture 'stylegan9'.*dcgan.*mlp"):
        get_architecture("stylegan9")


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError, match="registered twice"):
        register(ARCHITECTURES["dcgan"])


def test_a_new_architecture_needs_only_a_registry_entry():
    dcgan = ARCHITECTURES["dcgan"]
    arch = Architecture("tiny-test", "test only", dcgan.build_generator, dcgan.build_discriminator)
    register(arch)
    try:
        config = get_architecture("tiny-test").config(32, width=4)
        assert build_generator(config)(torch.randn(2, config.z_dim)).shape == (2, 3, 32, 32)
    finally:
        del ARCHITECTURES["tiny-test"]


def test_unsupported_size_is_refused():
    with pytest.raises(ValueError, match="size must be one of 32, 64, 128, got 48"):
        get_architecture("dcgan").config(48)


def test_seeds_give_the_same_latent_in_any_batch():
    together = latents_from_seeds([5, 9, 11], 100)
    alone = latents_from_seeds([9], 100)
    assert torch.equal(together[1], alone[0])
    assert not torch.equal(together[0], together[1])
    assert torch.equal(latents_from_seeds([5, 9], 100, truncation=0.0), torch.zeros(2, 100))
    assert torch.allclose(latents_from_seeds([5], 100, truncation=0.5), together[:1] * 0.5)


def test_every_architecture_has_recorded_parameter_counts():
    assert {arch for arch, _ in PARAMETER_COUNTS} == set(ARCHITECTURES)


def test_r1_penalty_is_added_on_its_schedule():
    config = get_architecture("resnet").config(32, width=4)
    D, loss = build_discriminator(config), build_loss(config)
    real, fake = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    torch.manual_seed(0)
    with_r1, stats = loss.discriminator_loss(D, real, fake, step=0)
    torch.manual_seed(0)
    without, stats_off = loss.discriminator_loss(D, real, fake, step=1)
    assert "r1" in stats and "r1" not in stats_off
    expected = float(stats["r1"]) * loss.r1_gamma / 2 * loss.r1_every
    assert float((with_r1 - without).detach()) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diff_augment_keeps_shape_and_passes_gradients(policy):
    from facegan.models.augment import diff_augment, parse_policy

    x = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    y = diff_augment(x, parse_policy(policy))
    assert y.shape == x.shape and not torch.equal(y, x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_moves_content():
    from facegan.models.augment import translation

    torch.manual_seed(3)
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 4, 4] = 1
    moved = translation(x)
    positions = {tuple(torch.nonzero(m[0]).tolist()[0]) for m in moved if m.sum() > 0}
    assert len(positions) > 1 and all(abs(r - 4) <= 1 and abs(c - 4) <= 1 for r, c in positions)


def test_unknown_augmentation_is_refused():
    from facegan.models.augment import parse_policy

    with pytest.raises(ValueError, match="unknown augmentation"):
        parse_policy("color,zoom")
    assert parse_policy("none") == []


def test_seed_out_of_range():
    with pytest.raises(ValueError, match="outside"):
        latents_from_seeds([2**32], 10)



def test_minibatch_stddev_appends_the_group_spread():
    from facegan.models.resnet import minibatch_stddev

    x = torch.randn(8, 5, 4, 4).to(memory_format=torch.channels_last)
    groups = x.reshape(4, 2, 5, 4, 4)  # images i and i + 2, i + 4, i + 6 form a group
    spread = groups.var(dim=0, unbiased=False).add(1e-8).sqrt().mean(dim=[1, 2, 3]).repeat(4)
    out = minibatch_stddev(x)
    assert out.shape == (8, 6, 4, 4)
    assert torch.equal(out[:, :5], x)
    assert torch.allclose(out[:, 5], spread.view(8, 1, 1).expand(8, 4, 4), atol=1e-6)

