"""The geometry of face alignment, pure numpy and Pillow: templates, similarity transforms, warps, boxes.

Templates give landmark positions as fractions of the crop side (x right, y down), for the points
``eye_left`` and ``eye_right`` (eye centres, left/right as seen in the image), ``nose_tip``,
``nose_base``, ``mouth_left`` and ``mouth_right`` (mouth corners):

- ``celeba``: the median positions that the detector and landmark models find in facegan's
  178x178 CelebA face crop (rows 20-197 of the aligned 178x218 photos), so that aligned photos
  and CelebA mix (``python benchmarks/align.py --measure-template`` measures them);
- ``ffhq``: the same median face placed by the FFHQ recipe (crop side = max(4 x eye distance,
  3.6 x eye-to-mouth distance), centred 0.1 eye-to-mouth below the eyes): a tighter crop.

Boxes are ``(left, top, right, bottom)`` in pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]  # left, top, right, bottom

POINT_NAMES = ("eye_left", "eye_right", "nose_tip", "nose_base", "mouth_left", "mouth_right")

# Median landmark positions in the 178x178 CelebA face crop, as fractions of its side; measured on
# 400 CelebA photos (upscaled 4x) with the 68-point model (the 5-point model for nose_base), see benchmarks/align.py.
CELEBA_POINTS = {
    "eye_left": (0.3928, 0.5220),
    "eye_right": (0.6079, 0.5222),
    "nose_tip": (0.4993, 0.6482),
    "nose_base": (0.4993, 0.6910),
    "mouth_left": (0.4052, 0.7479),
    "mouth_right": (0.5948, 0.7479),
}


@dataclass(frozen=True)
class Template:
    """Where the landmarks go: {point name: (x, y) as fractions of the crop side}."""

    name: str
    points: dict[str, tuple[float, float]]

    def positions(self, names: tuple[str, ...], side: float, margin: float = 0.0) -> np.ndarray:
        """The named points in pixels of a ``side`` crop that shows ``margin`` extra template widths each side."""
        fractions = np.array([self.points[name] for name in names], dtype=np.float64)
        return (fractions + margin) / (1 + 2 * margin) * side


def ffhq_layout(points: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """``points`` re-expressed in the crop that the FFHQ alignment recipe draws around them."""
    p = {name: np.array(xy, dtype=np.float64) for name, xy in points.items()}
    eye_avg = (p["eye_left"] + p["eye_right"]) / 2
    eye_to_eye = p["eye_right"] - p["eye_left"]
    eye_to_mouth = (p["mouth_left"] + p["mouth_right"]) / 2 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    center = eye_avg + eye_to_mouth * 0.1
    origin, side = center - x - y, 2 * np.hypot(*x)
    axes = np.stack([x, y]) / np.hypot(*x)  # rows: unit x and y axes of the crop
    return {name: tuple(round(float(v), 4) for v in axes @ (xy - origin) / side) for name, xy in p.items()}


TEMPLATES = {
    "celeba": Template("celeba", CELEBA_POINTS),
    "ffhq": Template("ffhq", ffhq_layout(CELEBA_POINTS)),
}
TEMPLATE_NAMES = tuple(TEMPLATES)


@dataclass(frozen=True)
class Similarity:
    """``dst = scale * R(angle) @ src + (tx, ty)``; ``matrix`` is the 2x3 affine form."""

    matrix: np.ndarray

    @classmethod
    def from_params(cls, scale: float, angle_deg: float, tx: float, ty: float) -> Similarity:
        c, s = scale * np.cos(np.radians(angle_deg)), scale * np.sin(np.radians(angle_deg))
        return cls(np.array([[c, -s, tx], [s, c, ty]], dtype=np.float64))

    @property
    def scale(self) -> float:
        return float(np.hypot(self.matrix[0, 0], self.matrix[1, 0]))

    @property
    def angle_deg(self) -> float:
        return float(np.degrees(np.arctan2(self.matrix[1, 0], self.matrix[0, 0])))

    def apply(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        return points @ self.matrix[:, :2].T + self.matrix[:, 2]

    def inverse(self) -> Similarity:
        linear_inv = np.linalg.inv(self.matrix[:, :2])
        return Similarity(np.hstack([linear_inv, -linear_inv @ self.matrix[:, 2:]]))

    def to_dict(self) -> dict:
        return {"matrix": np.round(self.matrix, 6).tolist(), "scale": round(self.scale, 6),
                "rotation_deg": round(self.angle_deg, 4)}


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """The least-squares similarity (no reflection) mapping ``src`` points onto ``dst`` (Umeyama, 1991)."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching N x 2 point sets with N >= 2, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / src_c.var(0).sum()
    translation = dst_mean - scale * rotation @ src_mean
    return Similarity(np.hstack([scale * rotation, translation[:, None]]))


def unrotation(angle: float, turned_size: tuple[int, int], size: tuple[int, int]) -> Similarity:
    """Maps pixels of ``Image.rotate(angle, expand=True)`` (counter-clockwise, size ``turned_size``) back."""
    turn_back = Similarity.from_params(1.0, angle, 0, 0)
    shift = np.array(size) / 2 - turn_back.apply(np.array(turned_size) / 2)
    return Similarity.from_params(1.0, angle, *shift)


def warp_reflected(image: np.ndarray, to_crop: Similarity, side: int) -> tuple[np.ndarray, float]:
    """The ``side`` x ``side`` crop that ``to_crop`` maps ``image`` (H x W x 3 uint8) onto, and the filled fraction.

    Pixels of the crop whose source lies outside the photo come from the photo mirrored at its
    edges (numpy ``symmetric`` padding). Downscaling warps first to an intermediate size and then
    resizes with Pillow's antialiased bicubic, so small crops of large faces do not alias.
    """
    height, width = image.shape[:2]
    work_side = int(np.clip(round(side / to_crop.scale), side, 4 * side))
    to_work = Similarity(to_crop.matrix * (work_side / side))
    from_work = to_work.inverse()
    corners = from_work.apply(np.array([[0, 0], [work_side, 0], [0, work_side], [work_side, work_side]]))
    pad = int(np.ceil(max(0.0, -corners.min(), corners[:, 0].max() - width, corners[:, 1].max() - height))) + 2
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric") if pad > 2 else image
    offset = pad if pad > 2 else 0
    inverse = from_work.matrix.copy()
    inverse[:, 2] += offset
    warped = Image.fromarray(padded).transform(
        (work_side, work_side), Image.AFFINE, tuple(inverse.ravel()), resample=Image.BICUBIC
    )
    if work_side != side:
        warped = warped.resize((side, side), Image.BICUBIC)
    return np.asarray(warped, dtype=np.uint8), filled_fraction(to_crop, side, width, height)


def filled_fraction(to_crop: Similarity, side: int, width: int, height: int) -> float:
    """The fraction of crop pixels whose centre maps outside a ``width`` x ``height`` photo."""
    centres = np.arange(side) + 0.5
    grid = np.stack(np.meshgrid(centres, centres), axis=-1).reshape(-1, 2)
    source = to_crop.inverse().apply(grid)
    outside = (source[:, 0] < 0) | (source[:, 0] > width) | (source[:, 1] < 0) | (source[:, 1] > height)
    return float(outside.mean())


def named_points(points: np.ndarray) -> dict[str, np.ndarray]:
    """The template's named points from dlib's 68-point (iBUG) or 5-point layout."""
    if len(points) == 68:
        return {
            "eye_left": points[36:42].mean(0),
            "eye_right": points[42:48].mean(0),
            "nose_tip": points[30],
            "mouth_left": points[48],
            "mouth_right": points[54],
        }
    if len(points) == 5:  # 0-1: the image-right eye's corners, 2-3: the image-left eye's, 4: below the nose
        return {"eye_left": points[2:4].mean(0), "eye_right": points[0:2].mean(0), "nose_base": points[4]}
    raise ValueError(f"expected 68 or 5 landmarks, got {len(points)}")


def box_centre(box: Box) -> np.ndarray:
    """The centre (x, y) of a (left, top, right, bottom) box."""
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def same_face(a: Box, b: Box) -> bool:
    """Whether two boxes' centres lie within half a face width (the larger box's) of each other."""
    distance = np.hypot(*(box_centre(a) - box_centre(b)))
    return distance <= 0.5 * max(a[2] - a[0], b[2] - b[0])


class Detection(NamedTuple):
    """One face a detector found."""

    box: Box  # in the pixels of the image searched (after mapping back: of the photo)
    score: float  # detector confidence (HOG: SVM margin, below 0 a near miss; CNN: its confidence); higher is surer
    angle: float  # degrees (counter-clockwise, as Image.rotate) of the turned copy it was found on; 0: upright

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]


def suppress_duplicates(found: list[Detection]) -> list[Detection]:
    """Keep the best-scoring of detections on the same face."""
    kept: list[Detection] = []
    for hit in sorted(found, key=lambda hit: -hit.score):
        if not any(same_face(hit.box, other.box) for other in kept):
            kept.append(hit)
    return kept
