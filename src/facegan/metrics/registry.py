"""The metrics `facegan eval` can compute, one decorated function each (like NVlabs' `metric_main.py`).

A metric is a function of a :class:`MetricContext` (real and fake Inception features, the
EvalConfig) that returns its named numbers. Decorating it registers it under its function name,
which `--metrics` then accepts::

    @register_metric
    def fid(context: MetricContext) -> dict[str, float]:
        return {"fid": fid_from_features(context.real, context.fake)}

A metric's keys are its name or start with its name and "_" (``kid`` gives ``kid_mean`` and
``kid_std``), so two metrics never overwrite each other's numbers or the result's other fields.
``summary`` formats its part of the line `facegan eval` prints; without one each key is
printed with its value. Adding a metric is one decorated function, here or in any module that
is imported before the evaluation runs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .fid import fid_from_features, kid_from_features

__all__ = [
    "Metric",
    "MetricContext",
    "compute_metrics",
    "metric_line",
    "metric_names",
    "parse_metrics",
    "register_metric",
    "unregister_metric",
]

#: Fields of an evaluation result that are not any metric's: no metric's keys may cover them.
RESERVED_KEYS = ("n_real", "n_fake", "metrics", "real", "split", "checkpoint", "fake", "truncation", "precision",
                 "time")


@dataclass(frozen=True)
class MetricContext:
    """What a metric gets: Inception features (N x 2048 float32) of the real and fake images, and the EvalConfig."""

    real: np.ndarray
    fake: np.ndarray
    config: Any  # facegan.metrics.evaluate.EvalConfig (its options, e.g. kid_subsets)


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[MetricContext], dict[str, float]]
    summary: Callable[[dict], str] | None = None

    def owns(self, key: str) -> bool:
        return key == self.name or key.startswith(self.name + "_")

    def line(self, result: dict) -> str:
        """This metric's part of the printed result line."""
        if self.summary is not None:
            return self.summary(result)
        return "  ".join(f"{key} {value:.6g}" for key, value in result.items() if self.owns(key))


_METRICS: dict[str, Metric] = {}


def register_metric(compute: Callable[[MetricContext], dict[str, float]] | None = None, *, name: str | None = None,
                    summary: Callable[[dict], str] | None = None):
    """Register `compute` as a metric named `name` (its function name by default); returns `compute`.

    Usable bare (``@register_metric``) or with options (``@register_metric(summary=...)``).
    """
    def register(function: Callable[[MetricContext], dict[str, float]]):
        metric = Metric(name or function.__name__, function, summary)
        if not re.fullmatch(r"[a-z][a-z0-9_]*", metric.name):
            raise ValueError(f"metric name {metric.name!r}: use lowercase letters, digits and _")
        if metric.name in _METRICS:
            raise ValueError(f"a metric named {metric.name!r} is already registered")
        clash = [key for key in RESERVED_KEYS if metric.owns(key)]
        if clash:
            raise ValueError(f"metric name {metric.name!r} would cover the result field {clash[0]!r}")
        _METRICS[metric.name] = metric
        return function

    return register if compute is None else register(compute)


def unregister_metric(name: str) -> None:
    """Remove a registered metric (for tests and plugins); KeyError if there is none by that name."""
    del _METRICS[name]


def metric_names() -> tuple[str, ...]:
    """The registered metrics, in registration order."""
    return tuple(_METRICS)


def parse_metrics(text: str) -> tuple[str, ...]:
    """The metric names of a comma-separated list, checked against the registry (duplicates dropped)."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise ValueError(f"--metrics names no metric; choose from: {', '.join(metric_names())}")
    unknown = [name for name in names if name not in _METRICS]
    if unknown:
        raise ValueError(f"unknown metric{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                         f"in --metrics; choose from: {', '.join(metric_names())}")
    return names


def compute_metrics(names: tuple[str, ...] | list[str], context: MetricContext) -> dict:
    """The numbers of each metric in `names`, in that order, merged into one dict."""
    result: dict = {}
    for name in names:
        metric = _METRICS[name]
        numbers = metric.compute(context)
        stray = [key for key in numbers if not metric.owns(key)]
        if stray:
            raise ValueError(f"metric {name!r} returned {stray[0]!r}: its keys must be {name!r} or start with "
                             f"{name + '_'!r}")
        result.update(numbers)
    return result


def metric_line(name: str, result: dict) -> str:
    return _METRICS[name].line(result)


# --------------------------------------------------------------------------------------
# The metrics
# --------------------------------------------------------------------------------------

@register_metric(summary=lambda result: f"FID {result['fid']:.3f}")
def fid(context: MetricContext) -> dict[str, float]:
    """Frechet Inception Distance (Heusel et al. 2017), as torch-fidelity computes it."""
    return {"fid": fid_from_features(context.real, context.fake)}


@register_metric(summary=lambda result: f"KID {result['kid_mean'] * 1000:.3f} ± {result['kid_std'] * 1000:.3f} (x1000)")
def kid(context: MetricContext) -> dict[str, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): mean and std over --kid-subsets random subsets."""
    kid_mean, kid_std = kid_from_features(context.real, context.fake, context.config.kid_subsets,
                                          context.config.kid_subset_size)
    return {"kid_mean": kid_mean, "kid_std": kid_std}
