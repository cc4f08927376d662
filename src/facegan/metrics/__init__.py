"""Evaluation metrics: FID and KID on Inception-v3 features, matching torch-fidelity.

Typical use::

    from facegan.metrics import InceptionFeatures, fid_from_features, kid_from_features

    net = InceptionFeatures()              # or InceptionFeatures(path="inception.pt")
    real = net.extract(real_batches)       # uint8 N x 3 x H x W batches -> (N, 2048) float32
    fake = net.extract(fake_batches)
    fid = fid_from_features(real, fake)
    kid_mean, kid_std = kid_from_features(real, fake)

`facegan eval` computes the metrics of :mod:`facegan.metrics.registry`, one function each,
registered with ``@register_metric``; :func:`facegan.metrics.evaluate.evaluate` runs them.
"""

from facegan.metrics.fid import (
    feature_statistics,
    fid_from_features,
    fid_from_statistics,
    kid_from_features,
    load_statistics,
    save_statistics,
)
from facegan.metrics.inception import (
    FEATURE_DIM,
    INCEPTION_ENV,
    INCEPTION_FILENAME,
    INCEPTION_SHA256,
    INCEPTION_URL,
    InceptionFeatures,
    InceptionNotFoundError,
    find_inception,
    load_inception,
    resize_tf1_bilinear,
)
from facegan.metrics.registry import (
    MetricContext,
    metric_names,
    register_metric,
    unregister_metric,
)

__all__ = [
    "FEATURE_DIM",
    "INCEPTION_ENV",
    "INCEPTION_FILENAME",
    "INCEPTION_SHA256",
    "INCEPTION_URL",
    "InceptionFeatures",
    "InceptionNotFoundError",
    "MetricContext",
    "feature_statistics",
    "fid_from_features",
    "fid_from_statistics",
    "find_inception",
    "kid_from_features",
    "load_inception",
    "load_statistics",
    "metric_names",
    "register_metric",
    "resize_tf1_bilinear",
    "save_statistics",
    "unregister_metric",
]
