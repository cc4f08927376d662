"""Finding faces in ordinary photos and warping each into one canonical crop: the dlib backend and ``align()``.

For each photo: detect faces on a downscaled grey copy (dlib's HOG detector; its best near misses,
often faces tilted beyond its reach, are checked by dlib's CNN detector on a chip around each),
place landmarks on the full-resolution photo (dlib's shape predictor), fit a similarity transform
(rotation, uniform scale, translation; no shear) from the landmarks to a template by least
squares (Umeyama), and warp. Parts of the crop that fall outside the photo are filled by mirror
reflection of the photo (numpy ``symmetric`` padding); the fraction of the crop so filled is
recorded per face. The templates, transforms, warp and box arithmetic are in
:mod:`facegan.data.geometry`.

The backend (``pip install "facegan[align]"``) is dlib (Boost licence) with the models of the
``face-recognition-models`` package, located on disk without importing it.
"""
from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from facegan.data.geometry import (
    TEMPLATE_NAMES,
    TEMPLATES,
    Box,
    Detection,
    Similarity,
    box_centre,
    fit_similarity,
    named_points,
    same_face,
    suppress_duplicates,
    unrotation,
    warp_reflected,
)
from facegan.data.sources import DataError

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


@dataclass
class AlignedFace:
    """One face found in a photo and warped into the template crop."""

    image: np.ndarray  # size x size x 3 uint8
    index: int  # position among the faces found in the photo, largest first
    score: float  # detector confidence (HOG: SVM margin; higher is surer)
    box: Box  # detector box in the photo: left, top, right, bottom
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
        if self.template not in TEMPLATE_NAMES:
            raise DataError(f"template must be one of {', '.join(TEMPLATE_NAMES)}, got {self.template!r}")
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
        detections = sorted(self.detect(pixels), key=lambda hit: -hit.width)
        faces, too_small = [], 0
        for hit in detections:
            if hit.width < MIN_FACE_BOX_SLACK * self.options.min_face:
                too_small += 1
                continue
            face = self.align_box(pixels, hit, len(faces))
            if hit.width < self.options.min_face and face.eye_width() < self.options.min_face:
                too_small += 1
                continue
            faces.append(face)
            if self.options.faces == "largest":
                break
        return AlignResult(faces, too_small)

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        """One detection (box in photo pixels) per face, found on a grey copy scaled so --min-face is findable.

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

    def _detect_confirming_near_misses(self, pixels: np.ndarray, grey: Image.Image, scale: float) -> list[Detection]:
        """Upright HOG detections, plus its best near misses that the CNN detector confirms."""
        upright = self._detect_turned(grey, scale, 0.0, threshold=NEAR_MISS_SCORE)
        found = [hit for hit in upright if hit.score >= 0]
        near_misses = sorted((hit for hit in upright if hit.score < 0), key=lambda hit: -hit.score)
        for miss in near_misses[:MAX_NEAR_MISSES]:  # upright: angle 0
            if not any(same_face(miss.box, other.box) for other in found) and self._confirm_near_miss(pixels, miss.box):
                found += self._search_turned_chip(grey, scale, miss.box) or [miss]
        return found

    def _search_turned_chip(self, grey: Image.Image, scale: float, box: Box) -> list[Detection]:
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
            for hit in self._detect_turned(chip, scale, angle):
                photo_box = tuple(float(v) for v in np.add(hit.box, shift))
                if same_face(photo_box, box):
                    hits.append(Detection(photo_box, hit.score, angle))
        return hits

    def _confirm_near_miss(self, pixels: np.ndarray, box: Box) -> bool:
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

    def _detect_turned(self, grey: Image.Image, scale: float, angle: float, threshold: float = 0.0
                       ) -> list[Detection]:
        """Detections on ``grey`` (photo scaled by ``scale``) turned by ``angle``, as boxes in photo pixels."""
        turned = grey.rotate(angle, resample=Image.BILINEAR, expand=True) if angle else grey
        to_grey = unrotation(angle, turned.size, grey.size)
        found = []
        for hit in self._run_detector(self.models()["detector"], np.asarray(turned), threshold):
            centre = to_grey.apply(box_centre(hit.box)) / scale
            half = hit.width / scale / 2
            found.append(Detection((centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half),
                                   hit.score, angle))
        return found

    def _run_detector(self, detector, grey: np.ndarray, threshold: float) -> Iterator[Detection]:
        """The detector's hits on ``grey`` as it is, boxes in its pixels (so angle 0)."""
        if self.options.detector == "cnn":
            for hit in detector(grey, 0):
                r = hit.rect
                yield Detection((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(hit.confidence), 0.0)
            return
        boxes, scores, _ = detector.run(grey, 0, threshold)
        for r, score in zip(boxes, scores):
            yield Detection((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(score), 0.0)

    def landmarks(self, pixels: np.ndarray, box: Box, angle: float = 0.0) -> dict[str, np.ndarray]:
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

    def align_box(self, pixels: np.ndarray, hit: Detection, index: int) -> AlignedFace:
        """The aligned face that ``hit`` found (on a copy turned by ``hit.angle``; 0: upright, tilt measured here)."""
        box = hit.box
        points = self.landmarks(pixels, box, hit.angle)
        if hit.angle == 0:  # found upright: the landmark model places points on a tilted face less well
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
        return AlignedFace(crop, index, hit.score, tuple(float(v) for v in box), landmarks, to_crop, filled)

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
    return shared_aligner(AlignOptions(size=size, **options))(image).faces


@functools.lru_cache(maxsize=4)
def shared_aligner(options: AlignOptions) -> FaceAligner:
    """One aligner per set of options, so that repeated calls (a notebook, the page's uploads) load dlib's models
    once instead of for every photo (about 0.8 s each)."""
    return FaceAligner(options)
