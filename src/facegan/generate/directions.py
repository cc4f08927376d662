"""Edit directions: latent-space vectors that change one aspect of a face, and the file that keeps them.

Unsupervised directions are SeFa's closed-form factorisation (Shen & Zhou 2021): the generator's
first layer maps z linearly (before its activation) through a matrix A, and the eigenvectors of
AᵀA with the largest eigenvalues are the directions that layer's output moves most along. A
BatchNorm right after that layer rescales each channel in eval mode, so its scale is folded into A
first. Named directions (age, gender) are linear fits of an attribute classifier's predictions
over sampled latents (InterFaceGAN), made orthogonal to each other so that moving along one
changes the other as little as a linear model can arrange. Far from the mean the classifier's
readings are not linear in z, so an edit of one named attribute then holds the others where they
were with correction steps measured by the classifier (`hold_named`).

Every direction is a unit vector in z: one unit of a slider moves a face by one standard
deviation of the latent distribution along it.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import checkpoint
from ..checkpoint import CheckpointError
from ..runs import CHECKPOINT_DIR
from .latents import first_layer

KIND = "directions"
UNSUPERVISED_PREFIX = "dir"
DEFAULT_UNSUPERVISED = 10
MAX_UNSUPERVISED = 64
MIN_FIT_SAMPLES = 100
SLIDER_RANGE = 3.0  # sliders go from -3 to +3 units: a latent rarely lies further out along any direction
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def generator_fingerprint(network: nn.Module) -> str:
    """A short digest of a generator's weights: names a model so that directions and latents fit only it."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class Directions:
    """Named unit vectors in a model's latent space (K x z_dim), with what each one was fitted from."""

    names: list[str]
    vectors: torch.Tensor
    fingerprint: str
    notes: dict = field(default_factory=dict)  # per name: how it was found, and its measured effect

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.names):
            raise ValueError(f"{len(self.names)} direction names for vectors of shape {tuple(self.vectors.shape)}")
        for name in self.names:
            if not _NAME.match(name):
                raise ValueError(f"direction name {name!r}: use lower-case letters, digits and _, starting with a letter")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"direction names repeat: {self.names}")

    @property
    def z_dim(self) -> int:
        return int(self.vectors.shape[1])

    def vector(self, name: str) -> torch.Tensor:
        if name not in self.names:
            raise ValueError(f"unknown direction {name!r}; this model has {', '.join(self.names)}")
        return self.vectors[self.names.index(name)]

    def offset(self, edits: Mapping[str, float]) -> torch.Tensor:
        """The latent shift for `edits` ({name: units}); zero for no edits."""
        shift = torch.zeros(self.z_dim)
        for name, amount in edits.items():
            shift += float(amount) * self.vector(name)
        return shift

    def merged(self, other: Directions) -> Directions:
        """These directions plus `other`'s (same model); a name in both takes `other`'s vector."""
        if other.fingerprint != self.fingerprint:
            raise ValueError("directions of two different models cannot be merged")
        kept = [name for name in self.names if name not in other.names]
        vectors = torch.cat([torch.stack([self.vector(name) for name in kept]) if kept else self.vectors[:0], other.vectors])
        return Directions(kept + other.names, vectors, self.fingerprint, {**self.notes, **other.notes})


def directions_path(model_file: str | os.PathLike) -> Path:
    """Where a model's directions are kept: NAME.directions.safetensors beside a model file, or for a run's
    checkpoint RUN/directions/ckpt-N.safetensors (the checkpoints folder holds checkpoints only)."""
    model_file = Path(model_file)
    if model_file.parent.name == CHECKPOINT_DIR:
        return model_file.parent.parent / "directions" / model_file.name
    return model_file.with_name(f"{model_file.stem}.directions.safetensors")


def parse_edits(text: str | None) -> dict[str, float]:
    """`"age=+2,dir3=-1.5"` -> {"age": 2.0, "dir3": -1.5}; ValueError naming the bad part."""
    edits: dict[str, float] = {}
    for part in (text or "").replace(" ", "").split(","):
        if not part:
            continue
        name, equals, amount = part.partition("=")
        try:
            value = float(amount) if equals and name else float("nan")
        except ValueError:
            value = float("nan")
        if not np.isfinite(value):
            raise ValueError(f"--edit {text!r}: {part!r} is not NAME=AMOUNT, e.g. age=+2,dir3=-1.5")
        if name in edits:
            raise ValueError(f"--edit {text!r}: {name!r} is given twice")
        edits[name] = value
    return edits


def first_linear_map(network: nn.Module) -> torch.Tensor:
    """The matrix A (outputs x z_dim) of the generator's first layer, with a following BatchNorm's scale folded in."""
    linear, norm = first_layer(network)
    weight = linear.weight.detach().float()
    # Linear: (out, z); ConvTranspose2d: (z, C, k, k) -> (C*k*k, z), rows grouped by channel
    matrix = weight if isinstance(linear, nn.Linear) else weight.reshape(weight.shape[0], -1).T
    if norm is not None and norm.running_var is not None:
        scale = norm.weight.detach().float() / torch.sqrt(norm.running_var.float() + norm.eps)
        matrix = matrix * scale.repeat_interleave(matrix.shape[0] // scale.numel())[:, None]
    return matrix


def sefa(network: nn.Module, count: int = DEFAULT_UNSUPERVISED) -> Directions:
    """The `count` strongest unsupervised directions, named dir1 .. dirK, strongest first."""
    matrix = first_linear_map(network).double()
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix.T @ matrix)
    order = torch.argsort(eigenvalues, descending=True)[:count]
    vectors = eigenvectors[:, order].T
    signs = torch.sign(vectors.gather(1, vectors.abs().argmax(dim=1, keepdim=True)))  # eigenvectors' sign is arbitrary
    vectors = (vectors * signs).float()
    names = [f"{UNSUPERVISED_PREFIX}{k + 1}" for k in range(len(order))]
    share = (eigenvalues[order] / eigenvalues.sum()).tolist()
    notes = {name: {"method": "sefa", "variance share": round(value, 6)} for name, value in zip(names, share)}
    return Directions(names, vectors, generator_fingerprint(network), notes)


def fit_linear_direction(latents: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares fit values ≈ latents @ w + b: the unit direction of w and the change in value per unit."""
    design = np.concatenate([latents, np.ones((len(latents), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, values, rcond=None)
    weights = solution[:-1]
    norm = float(np.linalg.norm(weights))
    if norm == 0:
        raise ValueError("the attribute does not vary with the latent: no direction to fit")
    return weights / norm, norm


def orthogonalise(vectors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each direction with the others' components removed (InterFaceGAN's conditional manipulation), unit length."""
    result = {}
    for name, vector in vectors.items():
        others = np.stack([v for key, v in vectors.items() if key != name]) if len(vectors) > 1 else None
        if others is not None:
            basis, _ = np.linalg.qr(others.T)
            vector = vector - basis @ (basis.T @ vector)
        result[name] = vector / np.linalg.norm(vector)
    return result


def save_directions(directions: Directions, path: str | os.PathLike) -> Path:
    section = {"names": directions.names, "vectors": directions.vectors.contiguous(),
               "fingerprint": directions.fingerprint, "notes": directions.notes}
    return checkpoint.save(path, {"directions": section}, kind=KIND)


def load_directions(path: str | os.PathLike) -> Directions:
    """Directions saved by `save_directions`; CheckpointError naming the file when it holds none."""
    section = checkpoint.load_section(path, KIND, "directions file")
    try:
        return Directions(list(section["names"]), section["vectors"].float(), str(section["fingerprint"]),
                          dict(section.get("notes", {})))
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise CheckpointError(f"{path}: damaged directions file ({error})") from None


# What each named direction is fitted to: the classifier output it follows, and how that output becomes a value
# a linear model can follow (P(female) through its logit).
NAMED_ATTRIBUTES = {"age": ("age", "years"), "gender": ("female", "logit of P(female)")}
PROBABILITIES = {"female"}


def fit_named(network: nn.Module, images_of: Callable[[torch.Tensor], np.ndarray],
              predict: Callable[[np.ndarray], dict[str, np.ndarray]], samples: int = 5000, seed: int = 0,
              z_dim: int | None = None) -> Directions:
    """Named directions (age, gender) fitted to `predict`'s outputs on the faces of `samples` random latents.

    `images_of(z)` makes the faces; `predict(faces)` returns {"age": years, "female": probability} per face.
    """
    if samples < MIN_FIT_SAMPLES:
        raise ValueError(f"fitting a direction needs at least {MIN_FIT_SAMPLES} faces, got {samples}")
    z = torch.randn(samples, z_dim, generator=torch.Generator().manual_seed(seed))
    predicted = predict(images_of(z))
    targets = {name: _fit_target(predicted[output], output in PROBABILITIES) for name, (output, _) in NAMED_ATTRIBUTES.items()}
    fitted = {name: fit_linear_direction(z.numpy().astype(np.float64), values) for name, values in targets.items()}
    vectors = orthogonalise({name: vector for name, (vector, _) in fitted.items()})
    notes = {}
    for name, (output, unit) in NAMED_ATTRIBUTES.items():
        slope = float(np.dot(fitted[name][0], vectors[name]) * fitted[name][1])
        notes[name] = {"method": "linear fit to the attribute classifier", "fitted on": f"{samples} faces, seed {seed}",
                       "follows": unit, "change per unit": round(slope, 4)}
    names = list(NAMED_ATTRIBUTES)
    return Directions(names, torch.tensor(np.stack([vectors[n] for n in names]), dtype=torch.float32),
                      generator_fingerprint(network), notes)


def held_attributes(directions: Directions, edits: Mapping[str, float]) -> list[str]:
    """The named attributes an edit holds: when it moves a named direction, the named ones it leaves at 0."""
    named = [name for name in NAMED_ATTRIBUTES if name in directions.names
             and "change per unit" in directions.notes.get(name, {})]
    if not any(edits.get(name) for name in named):
        return []
    return [name for name in named if not edits.get(name)]


def hold_named(z: torch.Tensor, moved: torch.Tensor, held: list[str], directions: Directions,
               predict: Callable[[np.ndarray], dict[str, np.ndarray]],
               images_of: Callable[[torch.Tensor], np.ndarray], steps: int = 3) -> torch.Tensor:
    """`moved` (the latents `z` after an edit) corrected so that the `held` named attributes read as they did at `z`.

    Each of the `steps` moves every face along each held direction by the drift in the classifier's reading divided
    by a slope: the direction's fitted change per unit at first, then the face's own slope measured between its last
    two readings (a secant step). Faces read the direction at different slopes, so one fitted slope alone leaves part
    of the drift (benchmarks/README.md, "Steering", measures both).
    """
    before = _readings(predict(images_of(z)), held)
    units = {name: np.zeros(len(z)) for name in held}
    last: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def corrected() -> torch.Tensor:
        shift = sum(torch.as_tensor(units[name], dtype=moved.dtype)[:, None] * directions.vector(name).to(moved.dtype)
                    for name in held)
        return moved + shift

    for _ in range(steps):
        now = _readings(predict(images_of(corrected())), held)
        for name in held:
            fitted = directions.notes[name]["change per unit"]
            slope = _secant_slope(last[name], (units[name], now[name]), fitted) if name in last else fitted
            last[name] = (units[name], now[name])  # units[name] is replaced below, never changed in place
            units[name] = units[name] + (before[name] - now[name]) / slope
    return corrected()


def _readings(predicted: dict[str, np.ndarray], held: list[str]) -> dict[str, np.ndarray]:
    """Each held attribute's reading as its direction was fitted to it (a probability through its logit)."""
    outputs = {name: NAMED_ATTRIBUTES[name][0] for name in held}
    return {name: _fit_target(predicted[output], output in PROBABILITIES) for name, output in outputs.items()}


def _secant_slope(earlier: tuple[np.ndarray, np.ndarray], later: tuple[np.ndarray, np.ndarray], fitted: float,
                  within: float = 5.0) -> np.ndarray:
    """Each face's change in reading per unit between two corrections; the fitted slope where that is not within
    a factor `within` of it (a saturated reading, or two corrections too close to tell apart)."""
    (units_a, reading_a), (units_b, reading_b) = earlier, later
    step = units_b - units_a
    with np.errstate(divide="ignore", invalid="ignore"):
        local = (reading_b - reading_a) / step
    ratio = local / fitted
    usable = np.isfinite(local) & (np.abs(step) > 1e-6) & (ratio > 1 / within) & (ratio < within)
    return np.where(usable, local, fitted)


def _fit_target(values: np.ndarray, probability: bool) -> np.ndarray:
    """What a linear model follows: the values, or for a probability its logit, clipped where it saturates."""
    values = np.asarray(values, dtype=np.float64)
    if not probability:
        return values
    clipped = np.clip(values, 1e-3, 1 - 1e-3)
    return np.log(clipped / (1 - clipped))
