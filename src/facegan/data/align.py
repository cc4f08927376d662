"""Finding faces in ordinary photos and warping each into one canonical crop.

For each photo: detect faces on a downscaled grey copy (dlib's HOG detector; its best near misses,
often faces tilted beyond its reach, are checked by dlib's CNN detector on a chip around each),
place landmarks on the full-resolution photo (dlib's shape predictor), fit a similarity transform
(rotation, uniform scale, translation; no shear) from the landmarks to a template by least
squares (Umeyama), and warp. Parts of the crop that fall outside the photo are filled by mirror
reflection of the photo (numpy ``symmetric`` padding); the fraction of the crop so filled is
recorded per face.

Templates give landmark positions as fractions of the crop side (x right, y down), for the points
``eye_left`` and ``eye_right`` (eye centres, left/right as seen in the image), ``nose_tip``,
``nose_base``, ``mouth_left`` and ``mouth_right`` (mouth corners):

- ``celeba``: the median positions that the detector and landmark models find in facegan's
  178x178 CelebA face crop (rows 20-197 of the aligned 178x218 photos), so that aligned photos
  and CelebA mix (``python benchmarks/align.py --measure-template`` measures them);
- ``ffhq``: the same median face placed by the FFHQ recipe (crop side = max(4 x eye distance,
  3.6 x eye-to-mouth distance), centred 0.1 eye-to-mouth below the eyes): a tighter crop.

The backend (``pip install "facegan[align]"``) is dlib (Boost licence) with the models of the
``face-recognition-models`` package, located on disk without importing it.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from facegan.data.sources import DataError

POINT_NAMES = ("eye_left", "eye_right", "nose_tip", "nose_base", "mouth_left", "mouth_right")
TEMPLATE_NAMES = ("celeba", "ffhq")
FACE_CHOICES = ("largest", "all")
TURNED_CHOICES = ("auto", "always", "never")
TURN_ANGLES = (20.0, -20.0)
# HOG misses many tilted faces but scores them just below its threshold (0). With --turned auto, the
# best MAX_NEAR_MISSES upright detections down to NEAR_MISS_SCORE are checked by dlib's CNN detector
# on an upright chip CHIP_WIDTHS box widths wide, scaled so the face is CNN_CHIP_FACE_PX wide; a face
# found there is kept.
NEAR_MISS_SCORE = -0.8
MAX_NEAR_MISSES = 2
CHIP_WIDTHS = 1.7
CNN_CHIP_FACE_PX = 90
# A confirmed face's tilt comes from HOG on copies of its surroundings (TURNED_CHIP_WIDTHS box widths
# wide) turned by TURN_ANGLES where HOG finds it there, else from a first landmark fit.
TURNED_CHIP_WIDTHS = 2.5
MIN_TILT = 10.0  # degrees; a face tilted more gets its landmarks again on a chip turned upright
LANDMARK_MODELS = {5: "shape_predictor_5_face_landmarks.dat", 68: "shape_predictor_68_face_landmarks.dat"}
CNN_DETECTOR_MODEL = "mmod_human_face_detector.dat"
INSTALL_HINT = 'face alignment needs dlib and its models: pip install "facegan[align]"'

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
# Smallest face each detector finds (HOG: its 80x80 window; the CNN: about 40 px); photos are searched
# at the scale where --min-face becomes this, but never on more than MAX_DETECT_PIXELS.
DETECTOR_FACE_PX = {"hog": 80, "cnn": 40}
MAX_DETECT_PIXELS = 4_000_000
# The detector's boxes come in steps of 6/5 (its image pyramid), so a face just wider than --min-face
# can get a box up to a sixth narrower. A box down to MIN_FACE_BOX_SLACK x --min-face is kept when
# the face's width from its eye distance reaches --min-face: FACE_WIDTH_PER_EYE_DISTANCE is the
# median detector box on CelebA (90 px) over the template's eye distance (38.3 px of the 178 px crop).
MIN_FACE_BOX_SLACK = 0.8
FACE_WIDTH_PER_EYE_DISTANCE = 2.35


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


@dataclass
class AlignedFace:
    """One face found in a photo and warped into the template crop."""

    image: np.ndarray  # size x size x 3 uint8
    index: int  # position among the faces found in the photo, largest first
    score: float  # detector confidence (HOG: SVM margin; higher is surer)
    box: tuple[float, float, float, float]  # detector box in the photo: left, top, right, bottom
    landmarks: dict[str, tuple[float, float]]  # named points in photo pixels
    transform: Similarity  # photo pixels -> crop pixels
    filled: float  # fraction of the crop filled by reflection

    @property
    def width(self) -> float:
        """The face's size in the photo: the detector box's width."""
        return self.box[2] - self.box[0]

    def eye_width(self) -> float:
        """The face's size from its landmarks, in the detector box's units (see FACE_WIDTH_PER_EYE_DISTANCE)."""
        eyes = np.subtract(self.landmarks["eye_right"], self.landmarks["eye_left"])
        return FACE_WIDTH_PER_EYE_DISTANCE * float(np.hypot(*eyes))

    def record(self) -> dict:
        """What the prepare manifest keeps about this face."""
        return {
            "face": self.index,
            "score": round(self.score, 4),
            "box": [round(v, 1) for v in self.box],
            "landmarks": {name: [round(x, 2), round(y, 2)] for name, (x, y) in self.landmarks.items()},
            "transform": self.transform.to_dict(),
            "filled": round(self.filled, 4),
        }


@dataclass
class AlignResult:
    faces: list[AlignedFace]
    too_small: int = 0  # faces found but narrower than min_face


@dataclass(frozen=True)
class AlignOptions:
    """How faces are found and cropped; ``prepare`` takes these from its config."""

    template: str = "celeba"
    size: int = 64
    margin: float = 0.0
    min_face: int = 48
    faces: str = "largest"
    detector: str = "hog"
    landmarks: int = 68
    turned: str = "auto"  # search copies turned by TURN_ANGLES: "auto" around near misses, "always" the whole photo


    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise DataError(f"template must be one of {', '.join(TEMPLATES)}, got {self.template!r}")
        if self.faces not in FACE_CHOICES:
            raise DataError(f"faces must be one of {', '.join(FACE_CHOICES)}, got {self.faces!r}")
        if not 0 <= self.margin <= 1:
            raise DataError(f"margin must be between 0 and 1 (a fraction of the template crop), got {self.margin}")
        if self.min_face < 1:
            raise DataError(f"min_face must be at least 1 pixel, got {self.min_face}")
        if self.turned not in TURNED_CHOICES:
            raise DataError(f"turned must be one of {', '.join(TURNED_CHOICES)}, got {self.turned!r}")
        if self.detector not in ("hog", "cnn") or self.landmarks not in LANDMARK_MODELS:
            raise DataError(f"unknown backend: detector {self.detector!r}, landmarks {self.landmarks!r}")


def model_dir() -> Path:
    """The folder of dlib models shipped by ``face-recognition-models`` (found without importing it)."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
        import dlib  # noqa: F401
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(INSTALL_HINT)
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def backend_available() -> bool:
    try:
        model_dir()
    except DataError:
        return False
    return True


class FaceAligner:
    """Finds faces in RGB photos and aligns them: ``FaceAligner(AlignOptions(size=64))(image)``.

    Models load once per aligner; an aligner pickles without them (for process pools).
    """

    def __init__(self, options: AlignOptions = AlignOptions()) -> None:
        self.options = options
        self.template = TEMPLATES[options.template]
        self._models = None

    def __getstate__(self) -> dict:
        return {"options": self.options, "template": self.template, "_models": None}

    def __call__(self, image: Image.Image | np.ndarray) -> AlignResult:
        pixels = np.ascontiguousarray(np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image))
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"expected an RGB image (H x W x 3 uint8), got {pixels.shape} {pixels.dtype}")
        detections = sorted(self.detect(pixels), key=lambda d: -(d[0][2] - d[0][0]))
        faces, too_small = [], 0
        for box, score, angle in detections:
            if box[2] - box[0] < MIN_FACE_BOX_SLACK * self.options.min_face:
                too_small += 1
                continue
            face = self.align_box(pixels, box, score, len(faces), angle)
            if box[2] - box[0] < self.options.min_face and face.eye_width() < self.options.min_face:
                too_small += 1
                continue
            faces.append(face)
            if self.options.faces == "largest":
                break
        return AlignResult(faces, too_small)

    def detect(self, pixels: np.ndarray) -> list[tuple[tuple[float, float, float, float], float, float]]:
        """(box in photo pixels, score, rotation) per face, found on a grey copy scaled so --min-face is findable.

        Tilted faces: "auto" (HOG only) has the CNN detector check the best near misses of the
        upright search (rotation 0 unless HOG finds them on turned chips); "always" also searches
        whole copies turned by TURN_ANGLES, at several times the cost. A face found at several
        angles is kept once.
        """
        height, width = pixels.shape[:2]
        detector_px = DETECTOR_FACE_PX[self.options.detector]
        scale = min(detector_px / self.options.min_face, np.sqrt(MAX_DETECT_PIXELS / (height * width)))
        grey = Image.fromarray(pixels).convert("L")
        if abs(scale - 1) > 0.02:
            grey = grey.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR)
        if self.options.turned == "never" or self.options.detector != "hog":
            found = self._detect_turned(grey, scale, 0.0)
        else:
            found = self._detect_confirming_near_misses(pixels, grey, scale)
        if self.options.turned == "always":
            for angle in TURN_ANGLES:
                found += self._detect_turned(grey, scale, angle)
        return suppress_duplicates(found)

    def _detect_confirming_near_misses(self, pixels: np.ndarray, grey: Image.Image, scale: float) -> list:
        """Upright HOG detections, plus its best near misses that the CNN detector confirms."""
        upright = self._detect_turned(grey, scale, 0.0, threshold=NEAR_MISS_SCORE)
        found = [hit for hit in upright if hit[1] >= 0]
        near_misses = sorted((hit for hit in upright if hit[1] < 0), key=lambda hit: -hit[1])
        for box, score, _ in near_misses[:MAX_NEAR_MISSES]:
            if not any(same_face(box, other) for other, _, _ in found) and self._confirm_near_miss(pixels, box):
                found += self._search_turned_chip(grey, scale, box) or [(box, score, 0.0)]
        return found

    def _search_turned_chip(self, grey: Image.Image, scale: float, box) -> list:
        """HOG detections on turned copies of a chip of ``grey`` around ``box`` (photo pixels) that lie on its face.

        The chip is never clipped at the photo's edges (Pillow fills outside with black): a face near
        an edge keeps the context around it that the detector's window needs once turned.
        """
        half = TURNED_CHIP_WIDTHS * (box[2] - box[0]) * scale / 2
        centre = box_centre(box) * scale
        left, top, right, bottom = (int(v) for v in (*(centre - half), *(centre + half)))
        chip = grey.crop((left, top, right, bottom))
        shift = np.array([left, top, left, top]) / scale
        hits = []
        for angle in TURN_ANGLES:
            for chip_box, score, _ in self._detect_turned(chip, scale, angle):
                photo_box = tuple(float(v) for v in np.add(chip_box, shift))
                if same_face(photo_box, box):
                    hits.append((photo_box, score, angle))
        return hits

    def _confirm_near_miss(self, pixels: np.ndarray, box) -> bool:
        """Whether dlib's CNN detector finds a face on ``box`` (photo pixels), searching an upright chip around it.

        The chip is never clipped at the photo's edges (Pillow fills outside with black): a face near
        an edge keeps the context around it that the detector needs.
        """
        width = box[2] - box[0]
        centre = box_centre(box)
        half = CHIP_WIDTHS * width / 2
        left, top, right, bottom = (round(v) for v in (*(centre - half), *(centre + half)))
        zoom = CNN_CHIP_FACE_PX / width
        chip = Image.fromarray(pixels).crop((left, top, right, bottom))
        chip = chip.resize((max(1, round(chip.width * zoom)), max(1, round(chip.height * zoom))), Image.BILINEAR)
        for hit in self.models()["confirmer"](np.asarray(chip), 0):
            r = hit.rect
            chip_box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1]) / zoom
            if same_face(tuple(chip_box + [left, top, left, top]), box):
                return True
        return False

    def _detect_turned(self, grey: Image.Image, scale: float, angle: float, threshold: float = 0.0) -> list:
        turned = grey.rotate(angle, resample=Image.BILINEAR, expand=True) if angle else grey
        to_grey = unrotation(angle, turned.size, grey.size)
        found = []
        for box, score in self._run_detector(self.models()["detector"], np.asarray(turned), threshold):
            centre = to_grey.apply(box_centre(box)) / scale
            half = (box[2] - box[0]) / scale / 2
            found.append(((centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half), score, angle))
        return found

    def _run_detector(self, detector, grey: np.ndarray, threshold: float):
        if self.options.detector == "cnn":
            for hit in detector(grey, 0):
                r = hit.rect
                yield (r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(hit.confidence)
            return
        boxes, scores, _ = detector.run(grey, 0, threshold)
        for r, score in zip(boxes, scores):
            yield (r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(score)

    def landmarks(self, pixels: np.ndarray, box: tuple[float, float, float, float], angle: float = 0.0
                  ) -> dict[str, np.ndarray]:
        """Named landmark points (photo pixels) for the face in ``box``, from the full-resolution photo.

        A face found on a copy turned by ``angle`` gets its landmarks on a turned chip around it.
        """
        if angle:
            side = 2 * (box[2] - box[0])
            centre = box_centre(box)
            to_chip = Similarity.from_params(1.0, -angle, 0, 0)
            to_chip = Similarity.from_params(1.0, -angle, *(side / 2 - to_chip.apply(centre)))
            chip, _ = warp_reflected(pixels, to_chip, int(round(side)))
            chip_box = (side / 4, side / 4, 3 * side / 4, 3 * side / 4)
            back = to_chip.inverse()
            return {name: back.apply(xy) for name, xy in self.landmarks(chip, chip_box).items()}
        import dlib

        rect = dlib.rectangle(*(int(round(v)) for v in (box[0], box[1], box[2] - 1, box[3] - 1)))
        shape = self.models()["predictor"](pixels, rect)
        # dlib numbers pixels; +0.5 gives the continuous coordinates (pixel centres) that the warp uses
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64) + 0.5
        return named_points(points)

    def align_box(self, pixels: np.ndarray, box, score: float, index: int, angle: float = 0.0) -> AlignedFace:
        """The aligned face in ``box``, found on a copy turned by ``angle`` (0: upright, tilt measured here)."""
        points = self.landmarks(pixels, box, angle)
        if angle == 0:  # found upright: the landmark model places points on a tilted face less well
            eyes = np.subtract(points["eye_right"], points["eye_left"])
            tilt = float(np.degrees(np.arctan2(eyes[1], eyes[0])))
            if abs(tilt) > MIN_TILT:
                points = self.landmarks(pixels, box, tilt)
        names = tuple(points)
        side = self.options.size
        to_crop = fit_similarity(np.stack([points[n] for n in names]),
                                 self.template.positions(names, side, self.options.margin))
        crop, filled = warp_reflected(pixels, to_crop, side)
        landmarks = {name: (float(x), float(y)) for name, (x, y) in points.items()}
        return AlignedFace(crop, index, score, tuple(float(v) for v in box), landmarks, to_crop, filled)

    def models(self) -> dict:
        if self._models is None:
            import dlib

            folder = model_dir()
            cnn = None
            if self.options.detector == "cnn" or self.options.turned != "never":
                cnn = dlib.cnn_face_detection_model_v1(str(folder / CNN_DETECTOR_MODEL))
            detector = cnn if self.options.detector == "cnn" else dlib.get_frontal_face_detector()
            predictor = dlib.shape_predictor(str(folder / LANDMARK_MODELS[self.options.landmarks]))
            self._models = {"detector": detector, "predictor": predictor, "confirmer": cnn}
        return self._models


def unrotation(angle: float, turned_size: tuple[int, int], size: tuple[int, int]) -> Similarity:
    """Maps pixels of ``Image.rotate(angle, expand=True)`` (counter-clockwise, size ``turned_size``) back."""
    turn_back = Similarity.from_params(1.0, angle, 0, 0)
    shift = np.array(size) / 2 - turn_back.apply(np.array(turned_size) / 2)
    return Similarity.from_params(1.0, angle, *shift)


def box_centre(box) -> np.ndarray:
    """The centre (x, y) of a (left, top, right, bottom) box."""
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def same_face(a, b) -> bool:
    """Whether two boxes' centres lie within half a face width (the larger box's) of each other."""
    distance = np.hypot(*(box_centre(a) - box_centre(b)))
    return distance <= 0.5 * max(a[2] - a[0], b[2] - b[0])


def suppress_duplicates(found: list) -> list:
    """Keep the best-scoring of detections on the same face."""
    kept = []
    for box, score, angle in sorted(found, key=lambda d: -d[1]):
        if not any(same_face(box, other) for other, _, _ in kept):
            kept.append((box, score, angle))
    return kept


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


def align(image: Image.Image | np.ndarray | str | Path, size: int = 64, **options) -> list[AlignedFace]:
    """Every face in ``image`` (largest first), aligned to the template; options as in AlignOptions.

    ``image``: a path, a PIL image (turned upright by its EXIF orientation) or an H x W x 3 uint8 array.
    """
    from facegan.data.decode import SkippedImage, open_rgb

    if isinstance(image, (str, Path)):
        try:
            image = open_rgb(Path(image).read_bytes())
        except SkippedImage as skipped:
            raise DataError(f"cannot read {image}: {skipped.reason}") from None
    elif isinstance(image, Image.Image):
        image = ImageOps.exif_transpose(image)
    options.setdefault("faces", "all")
    return FaceAligner(AlignOptions(size=size, **options))(image).faces
