"""Seeds as users type them: StyleGAN's `--seeds 0-35,42` lists with ranges."""
import pytest

from facegan.models import MAX_SEED, parse_seeds


@pytest.mark.parametrize("text, seeds", [("7", [7]), ("0-3,7", [0, 1, 2, 3, 7]), (" 5 , 1-2,", [5, 1, 2]),
                                         ("3,3", [3, 3]), (f"{MAX_SEED}", [MAX_SEED])])
def test_lists_and_ranges_give_the_seeds_in_order(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [("", "names no seed"), ("a", "'a' is not a seed"), ("3-1", "'3-1' must be"),
                                           ("-1", "'-1' is not a seed"), (f"0-{MAX_SEED + 1}", "within 0.."),
                                           (f"0-{MAX_SEED}", "more than 1,000,000 seeds"), ("1-2-3", "is not a seed")])
def test_bad_seed_lists_are_refused_with_the_part_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_seeds(text)
