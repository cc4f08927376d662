import subprocess
import sys

import numpy as np
import pytest
import torch

import facegan
from facegan.checkpoint import CheckpointError
from facegan.generate import GenerateConfig, InterpolateConfig
from facegan.generate.config import DirectionsConfig
from facegan.generate.directions import (Directions, first_linear_map, fit_named, held_attributes, hold_named,
                                         load_directions, orthogonalise, parse_edits, save_directions, sefa)
from facegan.generate.latents import first_layer_output
from facegan.runs import list_checkpoints


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "facegan", *args], capture_output=True, text=True, timeout=300)


def test_sefa_finds_orthonormal_directions_ordered_by_how_far_the_first_layer_moves(trained_run):
    network = facegan.load(trained_run).network
    found = sefa(network, count=6)
    assert found.names == [f"dir{k}" for k in range(1, 7)]
    gram = found.vectors @ found.vectors.T
    assert torch.allclose(gram, torch.eye(6), atol=1e-5)
    # The first layer's output (BatchNorm included) moves by |A d| along d: strongest first, and dir1 beats
    # any random direction.
    moved = [_first_layer_change(network, vector) for vector in found.vectors]
    assert moved == sorted(moved, reverse=True)
    matrix = first_linear_map(network)
    assert np.allclose(moved, [float((matrix @ v).norm()) for v in found.vectors], rtol=1e-3)
    random = torch.nn.functional.normalize(torch.randn(50, network.z_dim, generator=torch.Generator().manual_seed(0)))
    assert max(_first_layer_change(network, v) for v in random) < moved[0]
    again = sefa(facegan.load(trained_run).network, count=6)
    assert torch.equal(again.vectors, found.vectors) and again.fingerprint == found.fingerprint


def _first_layer_change(network, vector):
    outputs = []  # cloned: the ReLU after a BatchNorm works in place
    handle = first_layer_output(network).register_forward_hook(lambda module, inputs, output: outputs.append(output.clone()))
    with torch.no_grad():
        network(torch.stack([torch.zeros_like(vector), vector]))
    handle.remove()
    return float((outputs[0][1] - outputs[0][0]).norm())


def test_sefa_on_a_generator_without_batchnorm(resnet_run):
    found = sefa(facegan.load(resnet_run).network, count=3)
    assert torch.allclose(found.vectors.norm(dim=1), torch.ones(3), atol=1e-5)


def test_edits_move_faces_and_an_edit_of_zero_is_the_identity(trained_run):
    generator = facegan.load(trained_run)
    plain = generator.faces([3, 4])
    assert np.array_equal(generator.faces([3, 4], edits={"dir1": 0.0, "dir2": 0}), plain)
    moved = generator.faces([3, 4], edits={"dir1": 3.0})
    assert not np.array_equal(moved, plain)
    z = facegan.models.latents_from_seeds([3, 4], generator.z_dim) + 3.0 * generator.directions.vector("dir1")
    assert np.array_equal(generator.images_from_latents(z), moved)
    with pytest.raises(ValueError, match="unknown direction 'age'; this model has dir1"):
        generator.faces([3], edits={"age": 1})


def test_directions_save_and_reload_bit_exactly_and_are_found_beside_the_checkpoint(trained_run, tmp_path):
    path, found = facegan.directions(DirectionsConfig(checkpoint=str(trained_run), named=False, count=4))
    assert path == trained_run / "directions" / list_checkpoints(trained_run)[0].name
    assert len(list_checkpoints(trained_run)) == len(list((trained_run / "checkpoints").iterdir()))
    loaded = load_directions(path)
    assert loaded.names == found.names and torch.equal(loaded.vectors, found.vectors)
    generator = facegan.load(trained_run)
    assert generator.directions_file == path and generator.directions.names == ["dir1", "dir2", "dir3", "dir4"]
    custom = Directions(["smile"], -found.vectors[:1], found.fingerprint, {"smile": {"method": "test"}})
    save_directions(custom, tmp_path / "mine.safetensors")
    paths = facegan.generate(GenerateConfig(checkpoint=str(trained_run), seeds="5", edit="smile=2", out=str(tmp_path / "f"),
                                            directions=str(tmp_path / "mine.safetensors")))
    from PIL import Image
    assert np.array_equal(np.asarray(Image.open(paths[0])), generator.faces([5], edits={"dir1": -2})[0])
    path.unlink()


def test_directions_of_another_model_and_bad_edits_are_refused_in_one_line(trained_run, resnet_run, tmp_path):
    other = sefa(facegan.load(resnet_run).network, count=2)
    save_directions(other, tmp_path / "other.safetensors")
    result = run_cli("generate", "--checkpoint", str(trained_run), "-n", "1", "--out", str(tmp_path / "f"),
                     "--edit", "dir1=1", "--directions", str(tmp_path / "other.safetensors"))
    assert result.returncode == 2 and "another model" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "f").exists()
    for edit, message in [("age=2", "unknown direction 'age'"), ("dir1", "not NAME=AMOUNT"), ("dir1=x", "not NAME=AMOUNT"),
                          ("dir1=1,dir1=2", "given twice"), ("dir1=nan", "not NAME=AMOUNT")]:
        result = run_cli("generate", "--checkpoint", str(trained_run), "-n", "1", "--out", str(tmp_path / "f"), "--edit", edit)
        assert result.returncode == 2, edit
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert parse_edits("age=+2, dir3=-1.5") == {"age": 2.0, "dir3": -1.5}
    assert parse_edits(None) == {}


def test_walking_along_a_direction(trained_run, tmp_path):
    generator = facegan.load(trained_run)
    walk = generator.walk_direction([9], "dir2", frames=8, span=2.0)
    assert walk.shape == (8, 32, 32, 3)
    assert np.array_equal(walk[0], generator.faces([9], edits={"dir2": 2.0})[0])
    assert np.array_equal(walk[4], generator.faces([9], edits={"dir2": -2.0})[0])
    gif = facegan.interpolate(InterpolateConfig(checkpoint=str(trained_run), seeds="9", along="dir2", frames=6,
                                                out=str(tmp_path / "walk.gif")))
    assert gif.stat().st_size > 0
    with pytest.raises(ValueError, match="at least two seeds"):
        InterpolateConfig(seeds="9").validate()


def test_named_directions_follow_the_attribute_and_hold_the_other_still(trained_run):
    """With a stand-in classifier (brightness as "age", red minus blue as "female"), the fitted directions move
    their own attribute monotonically and the other one much less."""
    generator = facegan.load(trained_run)

    def redness(faces):
        pixels = faces.astype(np.float64) / 255
        return pixels[..., 0].mean(axis=(1, 2)) - pixels[..., 2].mean(axis=(1, 2))

    usual = redness(generator.faces(range(200)))  # centre the stand-in's probability where this model's faces lie

    def predict(faces):
        logit = (redness(faces) - usual.mean()) / usual.std()
        return {"age": 100 * faces.astype(np.float64).mean(axis=(1, 2, 3)) / 255, "female": 1 / (1 + np.exp(-logit))}

    named = fit_named(generator.network, generator.images_from_latents, predict, samples=600, seed=1, z_dim=generator.z_dim)
    assert named.names == ["age", "gender"]
    again = fit_named(generator.network, generator.images_from_latents, predict, samples=600, seed=1, z_dim=generator.z_dim)
    assert torch.equal(again.vectors, named.vectors)
    generator.use_directions(named)
    generator.attribute_predictor = predict  # named edits hold the other attribute as this stand-in reads it
    seeds = list(range(100, 140))
    ages = [predict(generator.faces(seeds, edits={"age": amount}))["age"].mean() for amount in (-2, -1, 0, 1, 2)]
    assert all(a < b for a, b in zip(ages, ages[1:]))

    def change(name, output):
        low, high = (predict(generator.faces(seeds, edits={name: amount}))[output] for amount in (-2, 2))
        return np.abs(high - low).mean()

    assert change("age", "female") < change("gender", "female")
    assert change("gender", "age") < change("age", "age")
    assert named.notes["age"]["change per unit"] > 0


def _leaning_classifier(z: np.ndarray) -> dict[str, np.ndarray]:
    """A stand-in classifier reading latents directly: age along axis 0, a gender logit along axis 1 that also
    leans on axis 0 (so moving age alone changes gender)."""
    z = np.asarray(z, dtype=np.float64)
    return {"age": 10 * z[:, 0] + 30, "female": 1 / (1 + np.exp(-(3 * z[:, 1] + 0.9 * z[:, 0])))}


def _stand_in_directions(gender_slope: float = 3.0) -> Directions:
    """Age along axis 0 and gender along axis 1, with the gender direction's fitted change per unit."""
    age, gender = torch.eye(4)[:2]
    return Directions(["age", "gender"], torch.stack([age, gender]), "stand-in",
                      {"age": {"change per unit": 10.0}, "gender": {"change per unit": gender_slope}})


def test_an_age_edit_holds_gender_with_one_newton_step():
    directions = _stand_in_directions()
    z = 0.3 * torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    moved = z + 2 * directions.vector("age")
    held = hold_named(z, moved, ["gender"], directions, _leaning_classifier, lambda latents: latents.numpy(), steps=1)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    before, free, after = (_leaning_classifier(latents.numpy()) for latents in (z, moved, held))
    assert np.abs(logit(free["female"]) - logit(before["female"])).min() > 1.7  # the edit alone moved gender
    assert np.allclose(logit(after["female"]), logit(before["female"]), atol=1e-5)
    assert np.allclose(after["age"] - before["age"], 20, atol=1e-4)  # and age moved as asked


def _bending_classifier(z: np.ndarray) -> dict[str, np.ndarray]:
    """Like _leaning_classifier, but the gender logit bends (a cubic term), so one Newton step leaves some drift."""
    z = np.asarray(z, dtype=np.float64)
    return {"age": 10 * z[:, 0] + 30, "female": 1 / (1 + np.exp(-(3 * z[:, 1] + z[:, 1] ** 3 + 0.9 * z[:, 0])))}


def _gender_drift(classifier, directions: Directions, steps: int) -> np.ndarray:
    """|change in the gender logit| per face after an age edit of +2 held by `steps` correction steps."""
    z = 0.3 * torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    moved = z + 2 * directions.vector("age")
    held = hold_named(z, moved, ["gender"], directions, classifier, lambda latents: latents.numpy(), steps=steps)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    return np.abs(logit(classifier(held.numpy())["female"]) - logit(classifier(z.numpy())["female"]))


def test_more_correction_steps_hold_a_bending_attribute_closer():
    drift = {steps: _gender_drift(_bending_classifier, _stand_in_directions(), steps) for steps in (1, 2, 3)}
    assert (drift[1] > 0.05).all() and (drift[2] < drift[1]).all() and (drift[3] < drift[2]).all()


def test_a_face_whose_slope_differs_from_the_fitted_one_is_held_by_the_secant_step():
    halved = _stand_in_directions(gender_slope=1.5)  # the classifier's slope is 3
    drift = {steps: _gender_drift(_leaning_classifier, halved, steps) for steps in (1, 2)}
    assert (drift[1] > 1.0).all()  # the fitted slope alone overshoots by twice the drift
    assert np.allclose(drift[2], 0, atol=1e-6)  # the face's own slope, measured between two readings, lands exactly


def test_which_named_attributes_an_edit_holds():
    directions = Directions(["age", "gender", "dir1"], torch.eye(3), "stand-in",
                            {"age": {"change per unit": 6.5}, "gender": {"change per unit": 3.3}})
    assert held_attributes(directions, {"age": 2}) == ["gender"]
    assert held_attributes(directions, {"age": 2, "gender": 0, "dir1": 1}) == ["gender"]
    assert held_attributes(directions, {"gender": -1}) == ["age"]
    assert held_attributes(directions, {"age": 1, "gender": 1}) == []  # both asked for: nothing to hold
    assert held_attributes(directions, {"dir1": 3, "age": 0}) == []  # unsupervised edits hold nothing
    unfitted = Directions(["age", "gender"], torch.eye(2), "stand-in")  # no measured change per unit
    assert held_attributes(unfitted, {"age": 2}) == []


def test_the_shipped_models_age_edit_keeps_gender_closer_than_the_bare_direction():
    generator = facegan.load()
    seeds = range(2_000_000, 2_000_064)
    logit = lambda p: np.log(np.clip(p, 1e-3, 1 - 1e-3) / (1 - np.clip(p, 1e-3, 1 - 1e-3)))  # noqa: E731

    def ends(hold):
        generator.hold = hold
        return [facegan.api.predict_attributes(generator.faces(seeds, edits={"age": amount})) for amount in (-3, 3)]

    (free_low, free_high), (low, high) = ends(False), ends(True)
    drift = lambda a, b: np.abs(logit(a["female"]) - logit(b["female"])).mean()  # noqa: E731
    assert drift(low, high) < 0.6 * drift(free_low, free_high)
    assert (high["age"] - low["age"]).mean() > 0.8 * (free_high["age"] - free_low["age"]).mean() > 20


def test_orthogonalise_removes_shared_components():
    vectors = orthogonalise({"a": np.array([1.0, 1.0, 0.0]), "b": np.array([1.0, 0.0, 0.0])})
    assert abs(vectors["a"] @ np.array([1.0, 0.0, 0.0])) < 1e-12
    assert np.allclose(np.linalg.norm(vectors["a"]), 1)


def test_a_file_that_is_not_directions_is_refused(trained_run, tmp_path):
    with pytest.raises(CheckpointError, match="not a directions file"):
        load_directions(list_checkpoints(trained_run)[0])
    (tmp_path / "junk.safetensors").write_bytes(b"not a file at all")
    with pytest.raises(CheckpointError):
        load_directions(tmp_path / "junk.safetensors")


def test_the_shipped_model_ships_named_directions_that_fit_it():
    generator = facegan.load()
    assert generator.directions.names[:2] == ["age", "gender"]  # loading checks that they belong to this model
    assert generator.directions.notes["age"]["change per unit"] > 0
    assert not np.array_equal(generator.faces([1], edits={"age": 2}), generator.faces([1]))
