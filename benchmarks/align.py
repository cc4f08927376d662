"""Accuracy and speed of face alignment (`facegan prepare --align`) on synthetic canvases of known geometry.

    nice -n 10 python benchmarks/align.py --data ../shared/datasets/celeba

Aligned CelebA photos are pasted into larger canvases (256-1500 px a side; backgrounds of smoothed
noise, gradients or enlarged corners of CelebA photos, which hold no face) with a random similarity
transform: rotation within +-35 degrees, scale 0.25-2x, any position, mirrored half the time; one
to three faces per canvas, and one canvas in five holds none. The reference landmarks of each
photo come from the 68-point model placed on the original photo (with the fixed box that the
detector finds on CelebA's aligned photos), so the true landmarks in a canvas follow from the
transform.

Reported, per backend: recall of faces at least 48 px wide (the face width is the detector box's:
89 px in an original 178x218 CelebA photo, times the scale) with |rotation| <= 35 degrees whose
landmarks no photo pasted later hides (a photo is pasted whole, corners included), false faces
per face-free canvas, the median error of the eye positions after alignment (where the
true eyes land in the crop, against where a fit on the true landmarks puts them) as a percentage
of the crop width, the median landmark error as a fraction of the inter-ocular distance, and
photos per second on 1000x1000 JPEGs with one face each (decode + detect + landmarks + warp to
64 px) with one process per core; on a shared machine the wall-clock rate understates what the
cores do, so the rate that the measured CPU time per photo allows is reported too. The true eye
centres are the 68-point model's (the mean of six points per eye), so the 5-point model, whose
eye centres are the mean of two eye corners, carries a small systematic offset in that error.
Results: benchmarks/results/align.json, written after every step.

``--measure-template`` prints the median landmark positions in facegan's 178x178 CelebA crop
(the numbers of the ``celeba`` template in src/facegan/data/geometry.py).
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from facegan.data.align import AlignOptions, FaceAligner
from facegan.data.geometry import TEMPLATES, Similarity, fit_similarity
from facegan.data.decode import open_rgb

CELEBA_BOX = (46, 86, 136, 177)  # median HOG box on the 178x218 aligned photos (left, top, right, bottom)
CELEBA_FACE_WIDTH = CELEBA_BOX[2] - CELEBA_BOX[0]
CELEBA_CROP_TOP = 20  # facegan's face crop: rows 20..197
MIN_WIDTH = 48
MAX_ROTATION = 35.0
BACKENDS = {  # "turned": auto: the CNN checks HOG's best near misses; always: also whole copies turned by +-20 degrees
    "hog+68": dict(detector="hog", landmarks=68, turned="auto"),
    "hog+68 upright only": dict(detector="hog", landmarks=68, turned="never"),
    "hog+68 turned always": dict(detector="hog", landmarks=68, turned="always"),
    "hog+5": dict(detector="hog", landmarks=5, turned="auto"),
    "cnn+68": dict(detector="cnn", landmarks=68, turned="never"),
}
MIRRORED_NAMES = {"eye_left": "eye_right", "eye_right": "eye_left", "mouth_left": "mouth_right",
                  "mouth_right": "mouth_left", "nose_tip": "nose_tip", "nose_base": "nose_base"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/celeba"))
    parser.add_argument("--canvases", type=int, default=100, help="synthetic canvases (a fifth without faces)")
    parser.add_argument("--backends", default="hog+68,hog+68 turned always,cnn+68,hog+5",
                        help=f"comma list of: {'; '.join(BACKENDS)}")
    parser.add_argument("--cnn-canvases", type=int, default=10, help="canvases for the (slow) CNN detector")
    parser.add_argument("--speed-photos", type=int, default=24, help="1-megapixel photos for the speed test")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "align.json"))
    parser.add_argument("--measure-template", action="store_true", help="print the celeba template's numbers")
    return parser.parse_args(argv)


def celeba_files(data: str) -> list[Path]:
    root = Path(data) / "img_align_celeba"
    files = sorted(root.glob("*.jpg"))
    if not files:
        raise SystemExit(f"no CelebA photos in {root}")
    return files


def reference_points(aligner: FaceAligner, photo: np.ndarray, upscale: int = 1) -> dict[str, np.ndarray]:
    """Named landmarks of an aligned CelebA photo, placed with the fixed CelebA box (optionally on an upscaled copy)."""
    if upscale != 1:
        photo = np.asarray(Image.fromarray(photo).resize((photo.shape[1] * upscale, photo.shape[0] * upscale),
                                                           Image.BICUBIC))
    box = tuple(v * upscale for v in CELEBA_BOX)
    return {name: xy / upscale for name, xy in aligner.landmarks(photo, box).items()}


def measure_template(files: list[Path], count: int = 400) -> None:
    picked = files[:: max(1, len(files) // count)][:count]
    for landmarks in (68, 5):
        aligner = FaceAligner(AlignOptions(landmarks=landmarks))
        points = [reference_points(aligner, np.asarray(Image.open(f).convert("RGB")), upscale=4) for f in picked]
        for name in points[0]:
            x, y = np.median([p[name] for p in points], axis=0)
            print(f"{landmarks:2d}-point {name:12s} x {x:7.2f} y {y - CELEBA_CROP_TOP:7.2f} px in the 178 crop"
                  f" = ({x / 178:.4f}, {(y - CELEBA_CROP_TOP) / 178:.4f})")
    for name, template in TEMPLATES.items():
        print(name, {k: tuple(round(float(v), 4) for v in xy) for k, xy in template.points.items()})


def background(rng: np.random.Generator, width: int, height: int, photos: list[Path]) -> Image.Image:
    kind = rng.integers(3)
    if kind == 0:
        small = rng.integers(0, 256, (max(2, height // 32), max(2, width // 32), 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.BICUBIC)
        return image.filter(ImageFilter.GaussianBlur(2))
    if kind == 1:
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, width)[None, :, None] * rng.uniform() + np.linspace(0, 1, height)[:, None, None] * rng.uniform()
        t = t / max(t.max(), 1e-6)
        pixels = a * (1 - t) + b * t + rng.normal(0, 4, (height, width, 3))
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    corner = Image.open(photos[rng.integers(len(photos))]).convert("RGB").crop((0, 0, 40, 40))  # top-left: background, no face
    return corner.resize((width, height), Image.BICUBIC)


def random_transform(rng: np.random.Generator, width: int, height: int, taken: list, min_scale: float = 0.25
                     ) -> tuple[Similarity, float, float] | None:
    """A placement of a 178x218 photo whose face box lies inside the canvas and away from other faces."""
    for _ in range(30):
        scale = rng.uniform(min_scale, 2.0)
        angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
        radius = 0.75 * CELEBA_FACE_WIDTH * scale
        if 2 * radius > min(width, height):
            continue
        centre = rng.uniform([radius, radius], [width - radius, height - radius])
        if any(np.hypot(*(centre - c)) < radius + r for c, r in taken):
            continue
        face_centre = np.array([(CELEBA_BOX[0] + CELEBA_BOX[2]) / 2, (CELEBA_BOX[1] + CELEBA_BOX[3]) / 2])
        rotation = Similarity.from_params(scale, angle, 0, 0)
        shift = centre - rotation.apply(face_centre)
        taken.append((centre, radius))
        return Similarity.from_params(scale, angle, *shift), scale, angle
    return None


def build_canvas(rng, photos, aligner, with_faces: bool):
    width, height = (int(v) for v in rng.integers(256, 1501, 2))
    canvas = background(rng, width, height, photos).convert("RGBA")
    truth, taken = [], []
    for _ in range(int(rng.choice([1, 1, 1, 2, 2, 3])) if with_faces else 0):
        placement = random_transform(rng, width, height, taken)
        if placement is None:
            continue
        transform, scale, angle = placement
        photo = Image.open(photos[rng.integers(len(photos))]).convert("RGB")
        points = reference_points(aligner, np.asarray(photo))
        if rng.uniform() < 0.5:
            photo = ImageOps.mirror(photo)
            points = {MIRRORED_NAMES[n]: np.array([photo.width - xy[0], xy[1]]) for n, xy in points.items()}
        layer = photo.convert("RGBA").transform(
            (width, height), Image.AFFINE, tuple(transform.inverse().matrix.ravel()), resample=Image.BICUBIC)
        canvas = Image.alpha_composite(canvas, layer)
        for earlier in truth:
            earlier["covered"] = earlier["covered"] or covers(layer, earlier["points"])
        truth.append({"points": {n: transform.apply(xy) for n, xy in points.items()},
                      "width": CELEBA_FACE_WIDTH * scale, "rotation": angle, "covered": False})
    return canvas.convert("RGB"), truth


def covers(layer: Image.Image, points: dict[str, np.ndarray]) -> bool:
    """Whether a pasted photo hides any landmark of a face pasted before it (its corners can)."""
    alpha = layer.getchannel("A")
    inside = [(int(x), int(y)) for x, y in points.values() if 0 <= x < layer.width and 0 <= y < layer.height]
    return any(alpha.getpixel(xy) > 0 for xy in inside)


def match(face, truth: list[dict]) -> int | None:
    """The true face whose eye midpoint lies within half an eye distance of the detected one."""
    found = (np.array(face.landmarks["eye_left"]) + np.array(face.landmarks["eye_right"])) / 2
    for i, t in enumerate(truth):
        eyes = (t["points"]["eye_left"] + t["points"]["eye_right"]) / 2
        if np.hypot(*(found - eyes)) < 0.5 * np.hypot(*(t["points"]["eye_right"] - t["points"]["eye_left"])):
            return i
    return None


def evaluate_backend(name: str, canvases: list, size: int = 64) -> dict:
    aligner = FaceAligner(AlignOptions(size=size, faces="all", min_face=MIN_WIDTH, **BACKENDS[name]))
    template = aligner.template
    counted, hits, false_faces, empty_false, empty_count = 0, 0, 0, 0, 0
    eye_errors, landmark_errors, seconds = [], [], 0.0
    for canvas, truth in canvases:
        start = time.perf_counter()
        faces = aligner(canvas).faces
        seconds += time.perf_counter() - start
        targets = [t["width"] >= MIN_WIDTH and abs(t["rotation"]) <= MAX_ROTATION and not t["covered"] for t in truth]
        counted += sum(targets)
        matched = set()
        for face in faces:
            i = match(face, truth)
            if i is None:
                false_faces += 1
                empty_false += not truth
                continue
            matched.add(i)
            gt = truth[i]["points"]
            names = tuple(n for n in face.landmarks if n in gt)
            to_crop_true = fit_similarity(np.stack([gt[n] for n in names]), template.positions(names, size))
            eyes = np.stack([gt["eye_left"], gt["eye_right"]])
            eye_errors.append(np.linalg.norm(face.transform.apply(eyes) - to_crop_true.apply(eyes), axis=1).mean() / size)
            iod = np.hypot(*(gt["eye_right"] - gt["eye_left"]))
            landmark_errors.append(np.mean([np.hypot(*(np.array(face.landmarks[n]) - gt[n])) for n in names]) / iod)
        hits += sum(1 for i in matched if targets[i])
        empty_count += not truth
    return {
        "canvases": len(canvases),
        "faces_counted": counted,
        "faces_hidden": sum(t["covered"] for _, truth in canvases for t in truth),
        "recall": hits / max(counted, 1),
        "false_faces": false_faces,
        "false_faces_per_empty_canvas": empty_false / max(empty_count, 1),
        "empty_canvases": empty_count,
        "median_eye_error_pct_of_crop": 100 * float(np.median(eye_errors)) if eye_errors else None,
        "median_landmark_error_iod": float(np.median(landmark_errors)) if landmark_errors else None,
        "seconds_per_canvas": seconds / len(canvases),
    }


_speed_aligner: FaceAligner | None = None


def _start_speed_worker(backend: str) -> None:
    global _speed_aligner
    _speed_aligner = FaceAligner(AlignOptions(size=64, **BACKENDS[backend]))
    _speed_aligner.models()


def _align_jpeg(data: bytes) -> tuple[int, float]:
    start = time.process_time()
    faces = _speed_aligner(open_rgb(data)).faces
    return len(faces), time.process_time() - start


def speed(photos: list[Path], count: int, workers: int, seed: int, backend: str) -> dict:
    """Photos per second for 1000x1000 JPEGs with one face each, one process per worker.

    On a busy machine the wall-clock rate understates what the cores can do; the rate that the
    measured CPU time allows (workers / CPU seconds per photo) is reported too.
    """
    rng = np.random.default_rng(seed + 1)
    jpegs = []
    for _ in range(count):
        canvas = background(rng, 1000, 1000, photos).convert("RGBA")
        transform, _, _ = random_transform(rng, 1000, 1000, [], min_scale=0.6)
        layer = Image.open(photos[rng.integers(len(photos))]).convert("RGBA").transform(
            (1000, 1000), Image.AFFINE, tuple(transform.inverse().matrix.ravel()), resample=Image.BICUBIC)
        buffer = io.BytesIO()
        Image.alpha_composite(canvas, layer).convert("RGB").save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    with multiprocessing.get_context().Pool(workers, _start_speed_worker, (backend,)) as pool:
        pool.map(_align_jpeg, jpegs[:workers], chunksize=1)  # warm up every worker
        start = time.perf_counter()
        results = pool.map(_align_jpeg, jpegs, chunksize=1)
        elapsed = time.perf_counter() - start
    cpu_per_photo = float(np.mean([cpu for _, cpu in results]))
    return {"backend": backend, "photos": count, "megapixels": 1.0, "workers": workers,
            "photos_per_second": count / elapsed, "cpu_seconds_per_photo": cpu_per_photo,
            "photos_per_second_from_cpu_time": workers / cpu_per_photo,
            "faces_found": int(sum(found for found, _ in results))}


def main(argv=None) -> None:
    args = parse_args(argv)
    files = celeba_files(args.data)
    if args.measure_template:
        measure_template(files)
        return
    backends = args.backends.split(",")
    report = {
        "command": "python benchmarks/align.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "settings": {"canvases": args.canvases, "cnn_canvases": args.cnn_canvases, "seed": args.seed,
                     "min_face_width": MIN_WIDTH, "max_rotation": MAX_ROTATION, "template": "celeba", "crop": 64},
        "machine": {"cpus": len(os.sched_getaffinity(0)), "load_average_at_start": os.getloadavg(),
                    "python": platform.python_version()},
        "speed_1mp": [],
        "backends": {},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every step, so an interrupted run keeps what it measured
        out.write_text(json.dumps(report, indent=1) + "\n")

    for name in (b for b in backends if b.startswith("hog+68")):
        report["speed_1mp"].append(speed(files, args.speed_photos, args.workers, args.seed, name))
        print("speed", json.dumps(report["speed_1mp"][-1]), flush=True)
        save()
    rng = np.random.default_rng(args.seed)
    reference = FaceAligner(AlignOptions(landmarks=68))
    canvases = [build_canvas(rng, files, reference, with_faces=i % 5 != 4) for i in range(args.canvases)]
    for name in backends:
        subset = canvases[: args.cnn_canvases] if name.startswith("cnn") else canvases
        report["backends"][name] = evaluate_backend(name, subset)
        print(name, json.dumps(report["backends"][name]), flush=True)
        save()


if __name__ == "__main__":
    main()
