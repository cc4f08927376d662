"""Build the shipped age/gender classifier (`src/facegan/pretrained/attributes64.safetensors`) from UTKFace.

    OMP_NUM_THREADS=1 python benchmarks/attributes.py --data ../shared/datasets/utkface \\
        --out src/facegan/pretrained/attributes64.safetensors

UTKFace's photos are tight forehead-to-chin crops named AGE_GENDER_RACE_DATETIME.jpg. The classifier
scores faces made by the CelebA-trained generators, so the photos are prepared as `facegan prepare
--align --template celeba --size 64` does: each face is warped into CelebA's looser crop, and what
falls outside the photo is filled by reflection (the network reads only the face box the photos
cover: see facegan/metrics/attributes.py). Photos without a detected face and names without valid
labels are skipped and counted. A fixed 15 % of the photos, chosen by a hash of the file name, is
held out: the held-out age MAE and gender accuracy are reported beside the constant baselines (the
training median and mean age, the training majority gender), and gender apart for faces under 16.
If CelebA is found (`--celeba`), the classifier also scores 2,000 CelebA test photos (64 px,
prepare's centre crop, as the generator was trained): there are no labels for them here, but about
58 % of CelebA's faces are female (its Male attribute: 41.7 %), so the share predicted female shows
whether gender carries over from UTKFace to CelebA's crop. Results: benchmarks/results/attributes.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from facegan.data import PrepareConfig, prepare
from facegan.metrics.attributes import (
    fit_attribute_classifier,
    load_attribute_classifier,
    save_attribute_classifier,
    utkface_labels,
)

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT_PERCENT = 15
HELD_OUT_RULE = f"sha256(file name) as a number, mod 100, below {HELD_OUT_PERCENT}"
CELEBA_TEST_FACES = 2000
ADULT_AGE = 16  # gender is reported apart for younger faces: hard to tell at 64 px, and rare in CelebA


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/utkface"),
                        help="UTKFace: a folder of AGE_GENDER_RACE_DATETIME.jpg photos (or one holding photos/)")
    parser.add_argument("--out", default=str(ROOT / "src/facegan/pretrained/attributes64.safetensors"))
    parser.add_argument("--work", default=None, help="folder for the prepared photos (default: the facegan cache)")
    parser.add_argument("--plain", action="store_true", help="centre-crop the photos instead of aligning them")
    parser.add_argument("--epochs", type=int, default=36, help="about 4.5 minutes on one AMD EPYC core")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="decoding processes for prepare")
    parser.add_argument("--celeba", default=str(ROOT.parent / "shared/datasets/celeba"),
                        help="CelebA folder for the transfer check ('' to skip it)")
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results/attributes.json"))
    return parser.parse_args(argv)


def is_held_out(name: str) -> bool:
    """Whether the photo named `name` (its file name, any folder) is in the held-out split."""
    digest = hashlib.sha256(Path(name).name.encode()).hexdigest()
    return int(digest, 16) % 100 < HELD_OUT_PERCENT


def photo_folder(data: str) -> Path:
    path = Path(data).expanduser()
    return path / "photos" if (path / "photos").is_dir() else path


def labelled_faces(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """The prepared faces with labels, their (age, female) rows, their file names, and what was skipped."""
    work = Path(args.work).expanduser() if args.work else None
    config = PrepareConfig(data=str(photo_folder(args.data)), size=64, align=not args.plain, template="celeba",
                           workers=args.workers,
                           out=str(work / ("plain-64px" if args.plain else "celeba-64px")) if work else None)
    dataset = prepare(config, progress=False)
    names = [Path(entry["source"]).name for entry in dataset.manifest["files"]]
    labels = [utkface_labels(name) for name in names]
    kept = [i for i, label in enumerate(labels) if label is not None]
    skipped = {"photos": len(names) + len(dataset.manifest["skipped"]),
               "no_face_or_unreadable": dataset.manifest["skipped_counts"],
               "bad_name": len(names) - len(kept), "prepared": dataset.manifest["summary"]}
    return (np.asarray(dataset.images[kept]), np.array([labels[i] for i in kept], np.float32),
            [names[i] for i in kept], skipped)


def evaluate(predicted: dict[str, np.ndarray], labels: np.ndarray, train_labels: np.ndarray) -> dict:
    """Held-out age MAE and gender accuracy, and the same for the best constant guesses from training."""
    ages, females = labels[:, 0], labels[:, 1]
    right = (predicted["female"] >= 0.5) == (females == 1)
    adults = ages >= ADULT_AGE
    median_age, mean_age = float(np.median(train_labels[:, 0])), float(train_labels[:, 0].mean())
    majority = float(train_labels[:, 1].mean() >= 0.5)
    return {
        "age_mae_years": round(float(np.abs(predicted["age"] - ages).mean()), 3),
        "gender_accuracy": round(float(right.mean()), 4),
        f"gender_accuracy_age_{ADULT_AGE}_up": [int(adults.sum()), round(float(right[adults].mean()), 4)],
        f"gender_accuracy_under_{ADULT_AGE}": [int((~adults).sum()), round(float(right[~adults].mean()), 4)],
        "baseline_age_mae_years": round(float(np.abs(median_age - ages).mean()), 3),
        "baseline_age": median_age,
        "baseline_mean_age_mae_years": round(float(np.abs(mean_age - ages).mean()), 3),
        "baseline_mean_age": round(mean_age, 2),
        "baseline_gender_accuracy": round(float((females == majority).mean()), 4),
        "baseline_gender": "female" if majority else "male",
        "age_mae_by_decade": age_mae_by_decade(predicted["age"], ages),
    }


def age_mae_by_decade(predicted: np.ndarray, ages: np.ndarray) -> dict[str, list]:
    """{"0-9": [faces, MAE], ...}: where the age errors are."""
    table = {}
    for start in range(0, int(ages.max()) + 1, 10):
        inside = (ages >= start) & (ages < start + 10)
        if inside.any():
            table[f"{start}-{start + 9}"] = [int(inside.sum()), round(float(np.abs(predicted - ages)[inside].mean()), 2)]
    return table


def celeba_check(classifier, folder: str) -> dict | None:
    """The share of CelebA test faces predicted female (about 0.58 are) and their predicted ages."""
    if not folder or not Path(folder).is_dir():
        return None
    dataset = prepare(PrepareConfig(data=folder, size=64), progress=False)
    indices = dataset.split_indices("test" if "test" in dataset.split_counts() else "all")[:CELEBA_TEST_FACES]
    predicted = classifier.predict(np.asarray(dataset.images[indices]))
    return {"faces": len(indices), "predicted_female_share": round(float((predicted["female"] >= 0.5).mean()), 4),
            "expected_female_share": 0.58,
            "predicted_age_quartiles": [round(float(q), 1) for q in np.percentile(predicted["age"], [25, 50, 75])]}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> None:
    args = parse_args(argv)
    command = "OMP_NUM_THREADS=1 python " + shlex.join(["benchmarks/attributes.py", *(argv or sys.argv[1:])])
    start = time.perf_counter()
    images, labels, names, skipped = labelled_faces(args)
    prepare_seconds = time.perf_counter() - start
    held_out = np.array([is_held_out(name) for name in names])
    train, test = ~held_out, held_out
    print(f"{len(names)} labelled faces: {int(train.sum())} to train, {int(test.sum())} held out", file=sys.stderr)

    start = time.perf_counter()
    classifier = fit_attribute_classifier(images[train], labels[train, 0], labels[train, 1], epochs=args.epochs,
                                          batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=True)
    train_seconds = time.perf_counter() - start
    scores = evaluate(classifier.predict(images[test]), labels[test], labels[train])
    print(f"held out: age MAE {scores['age_mae_years']:.2f} years (median guess {scores['baseline_age_mae_years']:.2f}), "
          f"gender accuracy {scores['gender_accuracy']:.3f} (majority {scores['baseline_gender_accuracy']:.3f})",
          file=sys.stderr)

    info = {"data": "UTKFace, aligned to the celeba template at 64 px" if not args.plain else "UTKFace, centre crop",
            "train_photos": int(train.sum()), "held_out_photos": int(test.sum()), "held_out_rule": HELD_OUT_RULE,
            "held_out_age_mae_years": scores["age_mae_years"], "held_out_gender_accuracy": scores["gender_accuracy"],
            "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
            "command": command}
    out = save_attribute_classifier(classifier, args.out, info)
    reloaded = load_attribute_classifier(out).predict(images[test][:16])
    assert np.array_equal(reloaded["age"], classifier.predict(images[test][:16])["age"]), "save/load changed the weights"
    results = {
        "command": command, "cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "prepare_seconds": round(prepare_seconds, 1), "train_seconds": round(train_seconds, 1),
        "faces": len(names), "train": int(train.sum()), "held_out": int(test.sum()), "held_out_rule": HELD_OUT_RULE,
        "skipped": skipped,
        "train_final_loss": classifier.info["final_loss"], **scores,
        "celeba_transfer": celeba_check(classifier, args.celeba),
        "classifier_file": str(out), "classifier_bytes": out.stat().st_size,
    }
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
