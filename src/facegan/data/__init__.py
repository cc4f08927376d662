"""The data layer: find images, decode them once into a cached array, and serve shuffled batches.

Typical use::

    dataset = prepare(PrepareConfig(data="~/faces", size=64))
    order = BatchOrder(dataset.split_indices("train"), batch_size=64, seed=0)
    batch = dataset.load_batch(order.next_batch())   # float32 N x 3 x 64 x 64 in [-1, 1]
"""

from facegan.data.dataset import FORMAT_VERSION, BatchOrder, PreparedDataset, open_prepared
from facegan.data.decode import SKIP_REASONS, SkippedImage, decode_image
from facegan.data.images import make_grid, save_png, to_model_input, to_uint8
from facegan.data.prepare import PrepareConfig, prepare
from facegan.data.sources import IMAGE_EXTENSIONS, DataError
from facegan.settings import cache_root  # re-exported: where prepared data and other caches live

__all__ = [
    "FORMAT_VERSION",
    "IMAGE_EXTENSIONS",
    "SKIP_REASONS",
    "BatchOrder",
    "DataError",
    "PrepareConfig",
    "PreparedDataset",
    "SkippedImage",
    "cache_root",
    "decode_image",
    "make_grid",
    "open_prepared",
    "prepare",
    "save_png",
    "to_model_input",
    "to_uint8",
]
