"""The metric registry on its own: registering, naming rules, computing."""
import numpy as np
import pytest

from facegan.metrics import fid_from_features, kid_from_features, register_metric
from facegan.metrics import registry
from facegan.metrics.evaluate import EvalConfig


def features(seed: int, n: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 16)).astype(np.float32)


def test_fid_and_kid_are_registered_and_unchanged():
    assert registry.metric_names()[:2] == ("fid", "kid")
    real, fake = features(0), features(1, 15)
    config = EvalConfig(real="r", kid_subsets=4, kid_subset_size=10)
    result = registry.compute_metrics(("kid", "fid"), registry.MetricContext(real, fake, config))
    assert list(result) == ["kid_mean", "kid_std", "fid"]
    assert result["fid"] == fid_from_features(real, fake)
    assert (result["kid_mean"], result["kid_std"]) == kid_from_features(real, fake, 4, 10)


def test_decorator_forms_and_naming_rules(restore_registry):
    @register_metric
    def plain(context):
        return {"plain": 1.0}

    @register_metric(name="named", summary=lambda result: f"N {result['named_x']:.1f}")
    def whatever(context):
        return {"named_x": 2.0}

    assert plain.__name__ == "plain" and whatever.__name__ == "whatever"  # the functions are returned as they are
    assert registry.metric_names()[-2:] == ("plain", "named")
    result = registry.compute_metrics(["plain", "named"], registry.MetricContext(features(0), features(1), None))
    assert result == {"plain": 1.0, "named_x": 2.0}
    assert registry.metric_line("plain", result) == "plain 1" and registry.metric_line("named", result) == "N 2.0"

    with pytest.raises(ValueError, match="already registered"):
        register_metric(name="fid")(lambda context: {})
    for bad in ("Fid", "2x", "a-b", ""):
        with pytest.raises(ValueError, match="lowercase"):
            register_metric(name=bad)(lambda context: {})
    for clash in ("n", "split", "metrics"):  # would overwrite n_real / the split / the metric list of a result
        with pytest.raises(ValueError, match="result field"):
            register_metric(name=clash)(lambda context: {})
    assert registry.metric_names()[-2:] == ("plain", "named")


def test_a_metric_keeps_to_its_own_keys(restore_registry):
    @register_metric
    def sneaky(context):
        return {"sneaky": 1.0, "fid": 0.0}

    with pytest.raises(ValueError, match="'fid'"):
        registry.compute_metrics(["sneaky"], registry.MetricContext(features(0), features(1), None))


def test_unregister_unknown_is_a_key_error():
    with pytest.raises(KeyError):
        registry.unregister_metric("no_such_metric")
