"""The seed report's Keras DCGAN and its `train_on_batch` loop, timed (needs `pip install "facegan[keras]"`).

    python benchmarks/keras_seed.py --images ~/.cache/facegan/prepared/<hash>-32px/images.npy --batch 128

Prints one JSON object: median seconds per training step and img/s. `throughput.py` runs this in a
subprocess so that TensorFlow's threads and memory stay out of the PyTorch measurements. The
model is the one `facegan.models.seed` rewrites (same layers, same parameter counts):
Dense -> 8x8x3, five 3x3 Conv2DTranspose (BatchNorm + LeakyReLU on the first four, tanh on the
last), four strided 3x3 Conv2D + LeakyReLU + Dropout(0.2), Dense(1, sigmoid), Adam(2e-4, 0.5), BCE.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

Z_DIM = 100
WIDTH = 64


def strides_for(size: int) -> list[int]:
    from facegan.models.seed import generator_strides

    return generator_strides(size)


def build_generator(size: int = 32, z_dim: int = Z_DIM, width: int = WIDTH):
    from keras import Sequential, layers

    model = Sequential([layers.Input((z_dim,)), layers.Dense(8 * 8 * 3), layers.Reshape((8, 8, 3))], name="generator")
    filters = [4 * width, 2 * width, 2 * width, width, 3]
    for i, (f, s) in enumerate(zip(filters, strides_for(size))):
        if i < len(filters) - 1:
            model.add(layers.Conv2DTranspose(f, 3, strides=s, padding="same"))
            model.add(layers.BatchNormalization())
            model.add(layers.LeakyReLU(0.2))
        else:
            model.add(layers.Conv2DTranspose(f, 3, strides=s, padding="same", activation="tanh"))
    return model


def build_discriminator(size: int = 32, width: int = WIDTH):
    from keras import Sequential, layers

    model = Sequential([layers.Input((size, size, 3))], name="discriminator")
    for f in (width, 2 * width, 2 * width, 4 * width):
        model.add(layers.Conv2D(f, 3, strides=2, padding="same"))
        model.add(layers.LeakyReLU(0.2))
        model.add(layers.Dropout(0.2))
    model.add(layers.Flatten())
    model.add(layers.Dense(1, activation="sigmoid"))
    return model


def build_gan(size: int = 32):
    """(generator, discriminator, combined model) compiled as in the classic Keras GAN recipe."""
    from keras import Sequential
    from keras.optimizers import Adam

    generator, discriminator = build_generator(size), build_discriminator(size)
    discriminator.compile(loss="binary_crossentropy", optimizer=Adam(2e-4, beta_1=0.5))
    discriminator.trainable = False  # frozen inside the combined model only
    gan = Sequential([generator, discriminator])
    gan.compile(loss="binary_crossentropy", optimizer=Adam(2e-4, beta_1=0.5))
    return generator, discriminator, gan


def trainable_parameters(model) -> int:
    """Trainable weights only: BatchNorm's moving mean and variance are buffers in PyTorch."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def train_step(generator, discriminator, gan, real: np.ndarray, rng: np.random.Generator) -> None:
    batch = real.shape[0]
    ones, zeros = np.ones((batch, 1), np.float32), np.zeros((batch, 1), np.float32)
    noise = rng.normal(size=(batch, Z_DIM)).astype(np.float32)
    fake = generator.predict_on_batch(noise)
    discriminator.train_on_batch(real, ones)
    discriminator.train_on_batch(fake, zeros)
    gan.train_on_batch(noise, ones)


def benchmark(images: np.ndarray, batch: int, warmup: int, steps: int, threads: int | None) -> dict:
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    size = images.shape[1]
    generator, discriminator, gan = build_gan(size)
    rng = np.random.default_rng(0)
    times = []
    for i in range(warmup + steps):
        index = np.sort(rng.choice(len(images), batch, replace=False))
        real = images[index].astype(np.float32) / 127.5 - 1.0
        started = time.perf_counter()
        train_step(generator, discriminator, gan, real, rng)
        if i >= warmup:
            times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {"framework": f"tensorflow {tf.__version__} / keras {tf.keras.__version__ if hasattr(tf.keras, '__version__') else ''}".strip(),
            "size": size, "batch": batch, "steps": steps, "seconds_per_step": seconds, "img_per_s": batch / seconds,
            "params_g": trainable_parameters(generator), "params_d": discriminator.count_params()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="images.npy of a prepared facegan cache (N x H x W x 3 uint8)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    images = np.load(args.images, mmap_mode="r")
    print(json.dumps(benchmark(images, args.batch, args.warmup, args.steps, args.threads)))


if __name__ == "__main__":
    main()
