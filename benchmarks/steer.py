"""Steering the shipped model: how well photos project into it, and what the named edit directions do.

    python benchmarks/steer.py --celeba ../shared/datasets/celeba --utkface ../shared/datasets/utkface

Projection: --photos CelebA test photos (centre-cropped as the model's training photos were) and --photos
UTKFace photos (aligned to the CelebA crop when facegan[align] is installed), projected with each variant;
PSNR and SSIM of the reconstruction at 64 px, and seconds per photo both in batches of 16 and one photo at a
time (what `facegan serve` does for an upload). SSIM is Wang et al.'s, Gaussian window sigma 1.5, on each
colour channel, averaged (skimage's structural_similarity with gaussian_weights=True, channel_axis=-1).

Directions: --faces fresh faces, each moved along "age" and "gender" across the sliders' range; the attribute
classifier's answer at each step, the change per unit of slider, and how often the other attribute changes
(a gender flip: P(female) on the other side of 0.5 at the two ends of the range), with the product's edits
(an age edit holds gender by correction steps with the shipped classifier, and the other way round) and
along the bare directions. Because the shipped classifier takes part in the held edits, --judge names a
second classifier, trained apart (another seed), that reads the same faces.

JSON goes to --out/steer.json with the pictures steer-projection-{celeba,utkface}.png (photos above their
reconstructions), steer-edit-projected.png (projected photos edited) and steer-age.png / steer-gender.png
(8 fresh faces x 5 slider values).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

import facegan
from facegan.data.align import backend_available
from facegan.data.images import make_grid
from facegan.generate.directions import SLIDER_RANGE
from facegan.models import latents_from_seeds
from facegan.generate.project import ProjectOptions, load_discriminator_features, project
from facegan.metrics.attributes import load_attribute_classifier
from throughput import environment  # benchmarks/ is on the path when this runs as a script

VARIANTS = {
    "z": ProjectOptions(space="z"),
    "extended": ProjectOptions(space="extended"),
    "extended-pixels": ProjectOptions(space="extended", feature_weight=0.0),  # no discriminator features
}
SLIDER_STEPS = 5
EDITS_SHOWN = [("age", -2.0), ("age", 0.0), ("age", 2.0), ("gender", -2.0), ("gender", 2.0)]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--celeba", required=True, help="CelebA folder (its test split is projected)")
    parser.add_argument("--utkface", required=True, help="UTKFace folder")
    parser.add_argument("--photos", type=int, default=200, help="photos of each set")
    parser.add_argument("--single", type=int, default=5, help="photos projected one at a time, for the latency")
    parser.add_argument("--faces", type=int, default=1000, help="fresh faces for the directions")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"projection variants, comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--judge", default=None, help="a second attribute classifier that reads the directions' results "
                        "beside the shipped one (the shipped one also holds gender during age edits): "
                        "benchmarks/attributes.py --seed 1 --out FILE trains one")
    parser.add_argument("--only", nargs="*", default=["projection", "edits", "directions"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    return parser.parse_args(argv)


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean structural similarity of N x H x W x 3 uint8 image pairs, per pair."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x):
        return gaussian_filter(x, sigma=(0, 1.5, 1.5, 0), truncate=3.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return index[:, 3:-3, 3:-3].mean(axis=(1, 2, 3))  # without the borders the window overhangs (skimage's crop)


def photo_sets(args) -> dict[str, np.ndarray]:
    celeba = facegan.prepare(args.celeba, size=64, progress=False)
    test = celeba.split_indices("test")[: args.photos]
    utk = facegan.prepare(args.utkface, size=64, progress=False, align=backend_available())
    pick = np.linspace(0, len(utk) - 1, args.photos).astype(int)
    return {"celeba test": np.asarray(celeba.images[test]), "utkface": np.asarray(utk.images[pick])}


def measure_projection(generator, features, photos: np.ndarray, options: ProjectOptions, single: int) -> dict:
    batched = project(generator, photos, options, features)
    one_at_a_time = [project(generator, photos[i : i + 1], options, features, batch_size=1).seconds for i in range(single)]
    scores = ssim(photos, batched.reconstructions)
    return {"psnr_mean": float(batched.psnr.mean()), "psnr_median": float(np.median(batched.psnr)),
            "psnr_min": float(batched.psnr.min()), "ssim_mean": float(scores.mean()),
            "seconds_per_photo_batch16": batched.seconds / len(photos),
            "seconds_per_photo_alone": float(np.mean(one_at_a_time)), "photos": len(photos),
            "steps": options.steps}, batched


def projection_part(args, generator, out: Path) -> dict:
    features = load_discriminator_features(generator.info["checkpoint"])
    results = {}
    variants = args.variants.split(",")
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    for set_name, photos in photo_sets(args).items():
        for variant in variants:
            figures, batched = measure_projection(generator, features, photos, VARIANTS[variant], args.single)
            results[f"{set_name} / {variant}"] = figures
            print(json.dumps({set_name: variant, **figures}), file=sys.stderr)
            if variant == "extended":
                _save_pairs(photos[:16], batched.reconstructions[:16], out / f"steer-projection-{set_name.split()[0]}.png")
    return results


def _save_pairs(photos: np.ndarray, faces: np.ndarray, path: Path) -> None:
    """Two rows per eight photos: the photos, then their reconstructions."""
    rows = [block for first in range(0, len(photos), 8) for block in (photos[first : first + 8], faces[first : first + 8])]
    Image.fromarray(make_grid(np.concatenate(rows), ncols=8)).save(path)


def edits_part(args, generator, out: Path) -> None:
    """4 projected CelebA test photos (extended codes), each: photo | age -2, 0, +2 | gender -2, +2."""
    celeba = facegan.prepare(args.celeba, size=64, progress=False)
    photos = np.asarray(celeba.images[celeba.split_indices("test")[16:20]])
    result = project(generator, photos, VARIANTS["extended"], load_discriminator_features(generator.info["checkpoint"]))
    rows = []
    for index in range(len(photos)):
        latent = result.latents.select(index)
        rows += [photos[index : index + 1], *[generator.latent_faces(latent, {name: amount})
                                              for name, amount in EDITS_SHOWN]]
    Image.fromarray(make_grid(np.concatenate(rows), ncols=1 + len(EDITS_SHOWN))).save(out / "steer-edit-projected.png")


def directions_part(args, generator, out: Path) -> dict:
    classifiers = {"shipped classifier": load_attribute_classifier()}
    if args.judge:
        classifiers["judge"] = load_attribute_classifier(args.judge)
    seeds = range(1_000_000, 1_000_000 + args.faces)  # never used to fit the directions
    amounts = np.linspace(-SLIDER_RANGE, SLIDER_RANGE, SLIDER_STEPS)
    results = {}
    for hold, label in ((True, "held (the default)"), (False, "bare direction")):
        generator.hold = hold
        for name in ("age", "gender"):
            faces = [generator.faces(seeds, edits={name: float(a)}) for a in amounts]
            results[f"{name}, {label}"] = {reader: slider_figures(classifier, faces, amounts, args.faces)
                                           for reader, classifier in classifiers.items()}
            print(json.dumps({f"{name}, {label}": results[f"{name}, {label}"]}), file=sys.stderr)
    generator.hold = True
    for name in ("age", "gender"):
        _save_slider_picture(generator, name, amounts, out / f"steer-{name}.png")
    results["random directions (baseline)"] = random_baseline(generator, classifiers["shipped classifier"], seeds)
    if args.judge:
        judge = classifiers["judge"].predict(generator.faces(seeds))["female"] > 0.5
        shipped = classifiers["shipped classifier"].predict(generator.faces(seeds))["female"] > 0.5
        results["the two classifiers disagree on gender (unedited faces)"] = float((judge != shipped).mean())
    return results


def slider_figures(classifier, faces: list[np.ndarray], amounts: np.ndarray, count: int) -> dict:
    """What one classifier reads along a slider: faces[i] are the faces at amounts[i]."""
    predicted = [classifier.predict(batch) for batch in faces]
    age = np.stack([p["age"] for p in predicted])
    female = np.stack([p["female"] for p in predicted])
    span = amounts[-1] - amounts[0]
    return {
        "amounts": amounts.tolist(),
        "mean predicted age": age.mean(axis=1).round(2).tolist(),
        "mean P(female)": female.mean(axis=1).round(4).tolist(),
        "age change over the range (years)": float((age[-1] - age[0]).mean()),
        "age change per unit": float((age[-1] - age[0]).mean() / span),
        "P(female) change over the range": float((female[-1] - female[0]).mean()),
        "gender flips over the range": float(((female[-1] > 0.5) != (female[0] > 0.5)).mean()),
        "faces whose age rises at every step": float((np.diff(age, axis=0) > 0).all(axis=0).mean()),
        "faces": count,
    }


def random_baseline(generator, classifier, seeds, count: int = 3) -> list[dict]:
    """What any move of the same size does: random unit directions across the same range. Faces the classifier
    is unsure of flip gender whatever moves them, so this is the floor for the flip rates above."""
    vectors = torch.nn.functional.normalize(torch.randn(count, generator.z_dim, generator=torch.Generator().manual_seed(5)))
    z = latents_from_seeds(seeds, generator.z_dim)
    results = []
    for vector in vectors:
        low, high = (classifier.predict(generator.images_from_latents(z + amount * vector))
                     for amount in (-SLIDER_RANGE, SLIDER_RANGE))
        results.append({"mean |age change| (years)": float(np.abs(high["age"] - low["age"]).mean()),
                        "gender flips over the range": float(((high["female"] > 0.5) != (low["female"] > 0.5)).mean())})
    print(json.dumps({"random": results}), file=sys.stderr)
    return results


def _save_slider_picture(generator, name: str, amounts: np.ndarray, path: Path) -> None:
    """8 faces (rows) x the slider's values (columns)."""
    rows = [generator.faces([seed], edits={name: float(a)})[0] for seed in range(2_000_000, 2_000_008) for a in amounts]
    Image.fromarray(make_grid(np.stack(rows), ncols=len(amounts))).save(path)


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    generator = facegan.load()
    result_path = out / "steer.json"
    report = json.loads(result_path.read_text()) if result_path.exists() else {}
    report["environment"] = environment()
    report["model"] = generator.info.get("checkpoint")
    started = time.perf_counter()
    if "projection" in args.only:
        report.setdefault("projection", {}).update(projection_part(args, generator, out))  # variants add up
    if "edits" in args.only:
        edits_part(args, generator, out)
    if "directions" in args.only:
        report["directions"] = directions_part(args, generator, out)
    report["seconds"] = time.perf_counter() - started
    result_path.write_text(json.dumps(report, indent=2) + "\n")
    print(result_path)


if __name__ == "__main__":
    main()
