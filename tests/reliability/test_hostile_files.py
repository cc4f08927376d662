"""Hostile files, made on purpose rather than damaged: each is refused with one line naming it, or used safely.

Crafted checkpoints carry a valid checksum (anyone can recompute one), so only the header's schema stands
between them and the loaders: wrong JSON types, dangling tensor references, string counters, deeply nested
JSON, relabelled dtypes, NaN weights, and architectures whose declared size does not match the tensors
(memory bombs). Zip bombs spread over many members, and an Inception file that is not the known one, are
tested here too.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import time
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import facegan
from facegan import checkpoint
from facegan.checkpoint import CheckpointError
from facegan.cli import main
from facegan.generate import generator as generator_module
from facegan.generate import load_generator, save_generator
from facegan.metrics.score import load_discriminator
from facegan.runs import list_checkpoints
from facegan.training.state import check_fits, load_latest

from .faults import FUZZ_CASES, same_tensors

SCALE = float(os.environ.get("FACEGAN_FUZZ_SCALE", "1"))


# --- crafting files with a valid checksum ------------------------------------------------------------------


def craft(source: Path, out: Path, edit) -> Path:
    """A copy of checkpoint `source` with `edit(header, payload)` applied and the checksum recomputed."""
    data = source.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header, payload = json.loads(data[8:8 + length]), bytearray(data[8 + length:])
    edit(header, payload)
    if isinstance(header.get("__metadata__"), dict):
        header["__metadata__"][checkpoint.CHECKSUM_KEY] = checkpoint.content_digest(header, [bytes(payload)])
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    out.write_bytes(len(text).to_bytes(8, "little") + text + bytes(payload))
    return out


def section(header: dict, name: str):
    return json.loads(header["__metadata__"][name])


def set_section(header: dict, name: str, tree) -> None:
    header["__metadata__"][name] = tree if isinstance(tree, str) else json.dumps(tree)


def set_field(name: str, key, value):
    """An edit that sets `key` of dict section `name` to the JSON `value`."""
    def edit(header, payload):
        tree = section(header, name)
        pairs = tree["__dict__"]
        for pair in pairs:
            if pair[0] == key:
                pair[1] = value
                break
        else:
            pairs.append([key, value])
        set_section(header, name, tree)
    return edit


def set_nested(name: str, path: list, value):
    """An edit that sets the entry at `path` (dict keys and list indices) of section `name` to `value`."""
    def edit(header, payload):
        tree = section(header, name)
        node = tree
        for key in path[:-1]:
            node = _child(node, key)
        if isinstance(node, list):
            node[path[-1]] = value
        else:
            next(pair for pair in node["__dict__"] if pair[0] == path[-1])[1] = value
        set_section(header, name, tree)
    return edit


def set_pair(name: str, index: int, pair):
    """An edit that replaces the `index`th [key, value] entry of dict section `name` with `pair`."""
    def edit(header, payload):
        tree = section(header, name)
        tree["__dict__"][index] = pair
        set_section(header, name, tree)
    return edit


def _child(node, key):
    if isinstance(node, list):
        return node[key]
    return next(pair[1] for pair in node["__dict__"] if pair[0] == key)


def set_metadata(name: str, text: str | None):
    def edit(header, payload):
        if text is None:
            del header["__metadata__"][name]
        else:
            header["__metadata__"][name] = text
    return edit


def relabel(key: str, dtype: str):
    def edit(header, payload):
        header[key]["dtype"] = dtype
    return edit


def poison(key: str, value: float):
    """Write `value` as the first float32 of tensor `key`."""
    def edit(header, payload):
        start = header[key]["data_offsets"][0]
        payload[start:start + 4] = struct.pack("<f", value)
    return edit


def assert_one_line_naming(error: Exception, path: Path, phrase: str) -> None:
    message = str(error)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message and len(message) < 400, message
    assert phrase in message, message


@pytest.fixture(scope="module")
def training_file(trained_run) -> Path:
    return list_checkpoints(trained_run)[0]  # step 4 of the 4-step 32 px dcgan run (width 8)


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory, training_file) -> Path:
    return save_generator(training_file, tmp_path_factory.mktemp("generator") / "g.safetensors", info={"note": "x"})


# --- crafted checkpoints: each is refused by every loader, with one line ------------------------------------

TRAINING_CASES = {
    # name: (edit, words the refusal must contain)
    "model is a list": (set_metadata("model", "[]"), "model is a JSON array"),
    "progress is a list": (set_metadata("progress", "[]"), "progress is a JSON array"),
    "progress is a number": (set_metadata("progress", "7"), "progress is a JSON number"),
    "config is a list": (set_metadata("config", "[1, 2]"), "config is a JSON array"),
    "config prepare is null": (set_field("config", "prepare", None), "prepare is not a dict"),
    "a tensor the file does not hold": (set_pair("G_ema", 0, ["main.0.weight", {"__tensor__": "G_ema.nope"}]),
                                        "does not hold"),
    "a tensor of another section": (set_pair("G_ema", 0, ["main.0.weight", {"__tensor__": "G.main.0.weight"}]),
                                    "of another section"),
    "a tensor reference of the wrong type": (set_pair("D", 0, ["main.0.weight", {"__tensor__": 5}]),
                                             "does not hold"),
    "a malformed dict entry": (set_pair("D", 0, ["main.0.weight"]), "malformed dict entry"),
    "an object that is no dict": (set_metadata("info", '{"a": 1}'), "neither a dict nor a tensor"),
    "a string step": (set_field("progress", "step", "4"), "progress step is '4'"),
    "a negative step": (set_field("progress", "step", -1), "progress step is -1"),
    "a boolean images_seen": (set_field("progress", "images_seen", True), "images_seen is True"),
    "NaN train_seconds": (set_field("progress", "train_seconds", float("nan")), "train_seconds is nan"),
    "a string batch position": (set_nested("progress", ["order", "position"], "3"), "progress order"),
    "JSON nested 100,000 deep": (set_metadata("config", "[" * 100_000 + "]" * 100_000), "nested"),
    "JSON nested 500 deep": (set_metadata("info", "[" * 500 + "]" * 500), "nested more than 64"),
    "not JSON at all": (set_metadata("progress", "{step: 4"), "progress is not JSON"),
    "F32 relabelled I32": (relabel("G_ema.main.0.weight", "I32"), "G_ema.main.0.weight is I32"),
    "F32 relabelled I32 in D": (relabel("D.main.0.weight", "I32"), "D.main.0.weight is I32"),
    "I64 counter relabelled F64": (relabel("G.main.1.num_batches_tracked", "F64"), "num_batches_tracked is F64"),
    "a NaN weight": (poison("G_ema.main.0.weight", float("nan")), "NaN or infinite"),
    "an infinite weight in D": (poison("D.main.0.weight", float("inf")), "NaN or infinite"),
    "an infinite optimiser moment": (poison("opt_g.state.0.exp_avg_sq", float("inf")), "NaN or infinite"),
    "width 2000 (a memory bomb)": (set_field("model", "width", 2000), "width 2000 is outside"),
    "width 1000 with width-8 tensors": (set_field("model", "width", 1000), "weights do not fit"),
    "z_dim 10**9": (set_field("model", "z_dim", 10**9), "z_dim 1000000000 is outside"),
    "size 48": (set_field("model", "size", 48), "size 48 is not one"),
    "a string size": (set_field("model", "size", "32"), "size is '32', not a whole number"),
    "a boolean width": (set_field("model", "width", True), "width is True"),
    "an unknown architecture": (set_field("model", "arch", "nope"), "unknown architecture 'nope'"),
    "an extra model field": (set_field("model", "depth", 3), "unknown field 'depth'"),
    "a missing weight": (set_metadata("G", json.dumps({"__dict__": []})), "G lacks"),
    "an optimiser moment of another shape": (
        set_nested("opt_g", ["state", 0, "exp_avg"], {"__tensor__": "opt_g.state.3.exp_avg"}), "exp_avg' for parameter 0"),
    "optimiser groups that list a parameter twice": (set_nested("opt_d", ["param_groups", 0, "params", 1], 0),
                                                     "do not list the"),
    "an optimiser setting that is NaN": (set_nested("opt_d", ["param_groups", 0, "lr"], float("nan")), "'lr' is nan"),
    "an optimiser state that is a list": (set_metadata("opt_g", "[]"), "opt_g is not an optimiser state"),
    "an optimiser step that is a string": (set_nested("opt_g", ["state", 0, "step"], "x"),
                                           "'step' for parameter 0 of G is 'x'"),
    "an optimiser step that is a list": (set_nested("opt_d", ["state", 1, "step"], [0.5]), "is [0.5]"),
    "a random-generator state of another size": (set_nested("rng", ["torch"], {"__tensor__": "rng.torch.x"}),
                                                 "does not hold"),
    "a random-generator state that is a weight": (
        set_metadata("rng", json.dumps({"__dict__": [["torch", 3]]})), "rng is not a random-generator state"),
    "no kind": (set_metadata("kind", None), "what kind"),
}


def crafted(tmp_path: Path, source: Path, case: str, cases: dict) -> Path:
    return craft(source, tmp_path / f"{case.replace(' ', '-')}.safetensors", cases[case][0])


@pytest.mark.parametrize("case", sorted(TRAINING_CASES))
def test_crafted_training_checkpoints_are_refused_with_one_line(tmp_path, training_file, case):
    path = crafted(tmp_path, training_file, case, TRAINING_CASES)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(path)
    assert_one_line_naming(caught.value, path, TRAINING_CASES[case][1])
    for loader in (load_generator, load_discriminator, lambda p: check_fits(p, checkpoint.load(p))):
        try:
            loader(path)
        except CheckpointError as error:
            assert_one_line_naming(error, path, "")
        # a loader that does not read the damaged section may use the file: that is fine


GENERATOR_CASES = {
    "info is a list": (set_metadata("info", "[1]"), "info is a JSON array"),
    "info is a string": (set_metadata("info", '"x"'), "info is a JSON string"),
    "model is a list": (set_metadata("model", "[]"), "model is a JSON array"),
    "model is missing": (set_metadata("model", None), "no model"),
    "G_ema is a number": (set_metadata("G_ema", "3"), "G_ema is a JSON number"),
    "F32 relabelled I32": (relabel("G_ema.main.0.weight", "I32"), "G_ema.main.0.weight is I32"),
    "a NaN weight": (poison("G_ema.main.3.weight", float("nan")), "NaN or infinite"),
    "width 2000": (set_field("model", "width", 2000), "width 2000 is outside"),
    "width 1000": (set_field("model", "width", 1000), "generator weights do not fit the dcgan model"),
    "a NaN on the model card": (set_field("info", "fid", float("nan")), "info holds the number nan"),
    "a number as a name on the card": (set_field("info", 3, "x"), "info has a name that is not a string (3)"),
    "a tensor on the card": (set_field("info", "w", {"__tensor__": "G_ema.main.0.weight"}), "of another section"),
}


@pytest.mark.parametrize("case", sorted(GENERATOR_CASES))
def test_crafted_generator_files_are_refused_with_one_line(tmp_path, generator_file, case):
    path = crafted(tmp_path, generator_file, case, GENERATOR_CASES)
    for loader in (checkpoint.load, load_generator):
        with pytest.raises(CheckpointError) as caught:
            loader(path)
        assert_one_line_naming(caught.value, path, GENERATOR_CASES[case][1])
    try:  # it copies only the model and G_ema: a damaged info does not concern it
        save_generator(path, tmp_path / "copy.safetensors")
    except CheckpointError as error:
        assert_one_line_naming(error, path, GENERATOR_CASES[case][1])


def test_a_card_cannot_pretend_to_come_from_another_file(tmp_path, generator_file):
    path = craft(generator_file, tmp_path / "g.safetensors", set_field("info", "checkpoint", ["/etc/passwd"]))
    assert load_generator(path).info["checkpoint"] == str(path)


def test_photo_options_of_the_wrong_type_are_refused_when_the_discriminator_loads(tmp_path, training_file):
    for option, value in (("margin", "x"), ("min_face", [1]), ("template", "nope")):
        path = craft(training_file, tmp_path / f"{option}.safetensors", set_nested("config", ["prepare", option], value))
        with pytest.raises(CheckpointError) as caught:
            load_discriminator(path)
        assert_one_line_naming(caught.value, path, "unusable photo options in its training config")


def test_the_cli_refuses_a_crafted_file_with_one_line_and_exit_2(tmp_path, generator_file, training_file,
                                                                  face_folder, capsys):
    bad_g = crafted(tmp_path, generator_file, "info is a list", GENERATOR_CASES)
    bad_t = crafted(tmp_path, training_file, "a string step", TRAINING_CASES)
    commands = {
        "generate": ["generate", "--checkpoint", str(bad_g), "-n", "1", "--out", str(tmp_path / "faces")],
        "export": ["export", "--checkpoint", str(bad_g), "--format", "torchscript", "--out", str(tmp_path / "g.pt")],
        "score": ["score", "--checkpoint", str(bad_t), str(next(face_folder.rglob("*.png")))],
    }
    for name, argv in commands.items():
        capsys.readouterr()
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"facegan {name}: error: {bad_t if name == 'score' else bad_g}: "), err
    assert not (tmp_path / "faces").exists() and not (tmp_path / "g.pt").exists()


def test_the_header_itself_is_checked_before_the_checksum(tmp_path, training_file):
    cases = {
        "metadata is a list": (lambda h, p: h.update({"__metadata__": [["format", "facegan-checkpoint"]]}),
                               "__metadata__ is not a map of strings"),
        "a metadata value is a number": (lambda h, p: h["__metadata__"].update({"kind": 3}),
                                         "__metadata__ is not a map of strings"),
        "header is a list": (None, "not an object"),
        "an unknown dtype": (relabel("G_ema.main.0.weight", "F8_E4M3"), "no dtype facegan writes"),
        "a shape that does not fit the offsets": (
            lambda h, p: h["G_ema.main.0.weight"].update({"shape": [1, 2, 3]}), "data offsets that do not fit"),
        "a string in a shape": (lambda h, p: h["G_ema.main.0.weight"].update({"shape": ["8"]}), "malformed shape"),
        "a tensor entry that is a list": (lambda h, p: h.update({"G_ema.main.0.weight": [1]}), "no dtype"),
    }
    for case, (edit, phrase) in cases.items():
        path = tmp_path / f"{case.replace(' ', '-')}.safetensors"
        if edit is None:
            text = b"[1, 2, 3]     "
            path.write_bytes(len(text).to_bytes(8, "little") + text)
        else:
            craft(training_file, path, edit)
        for loader in (checkpoint.load, load_generator, load_discriminator, checkpoint.read_metadata):
            with pytest.raises(CheckpointError) as caught:
                loader(path)
            assert_one_line_naming(caught.value, path, phrase)


def test_a_memory_bomb_is_refused_before_anything_is_built(tmp_path, generator_file, training_file, monkeypatch):
    """width 1000 passes the size cap, so only the shape check against the meta-built model stops it."""
    def no_real_networks(*args, **kwargs):
        raise AssertionError("a network was built for a file whose tensors do not fit it")

    monkeypatch.setattr(generator_module, "build_generator", no_real_networks)
    from facegan.metrics import score as score_module

    monkeypatch.setattr(score_module, "build_discriminator", no_real_networks)
    for source, loader in ((generator_file, load_generator), (training_file, load_discriminator)):
        path = craft(source, tmp_path / f"bomb-{source.stem}.safetensors", set_field("model", "width", 1000))
        started = time.monotonic()
        with pytest.raises(CheckpointError, match="weights do not fit the dcgan model it names"):
            loader(path)
        assert time.monotonic() - started < 5


def test_every_architecture_fits_its_own_files_and_the_shipped_model_loads(tmp_path):
    from facegan.api import default_model_path
    from facegan.models import ARCHITECTURES, build_discriminator, build_generator, get_architecture

    for name in sorted(ARCHITECTURES):
        model = get_architecture(name).config(32, None, 4)
        state = {"model": model.__dict__, "G_ema": build_generator(model).state_dict(),
                 "D": build_discriminator(model).state_dict()}
        path = checkpoint.save(tmp_path / f"{name}.safetensors", state, kind="x")
        assert checkpoint.load(path)["model"] == model.__dict__
    assert load_generator(default_model_path()).size == 64


# --- resume sets an unusable newest checkpoint aside --------------------------------------------------------


@pytest.mark.parametrize("case", ["a string step", "progress is a list", "F32 relabelled I32",
                                  "an optimiser moment of another shape", "JSON nested 100,000 deep",
                                  "width 2000 (a memory bomb)", "a NaN weight"])
def test_resume_sets_an_unusable_newest_checkpoint_aside(tmp_path, trained_run, capsys, case):
    run = shutil.copytree(trained_run, tmp_path / "run")
    newest, previous = list_checkpoints(run)
    crafted_copy = craft(newest, tmp_path / "crafted.safetensors", TRAINING_CASES[case][0])
    shutil.copyfile(crafted_copy, newest)
    path, saved = load_latest(run, resuming=True)
    assert path == previous and saved["progress"]["step"] == 2
    err = capsys.readouterr().err
    assert f"skipping checkpoint: {newest}: " in err and TRAINING_CASES[case][1] in err
    assert not newest.exists() and newest.with_name(newest.name + ".unusable").exists()


def test_resume_after_a_crafted_checkpoint_continues_exactly(tmp_path, trained_run, capsys):
    run = shutil.copytree(trained_run, tmp_path / "run")
    newest, previous = list_checkpoints(run)
    shutil.copyfile(craft(newest, tmp_path / "c.safetensors", TRAINING_CASES["a string step"][0]), newest)
    result = facegan.train(resume=run, steps=4, progress=False)
    err = capsys.readouterr().err
    assert f"resuming from {previous}" in err and "progress step is '4'" in err
    assert result.step == 4
    assert same_tensors(list_checkpoints(run)[0], list_checkpoints(trained_run)[0])


# --- fuzz: any JSON anywhere in any section is refused or loads --------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**12) | st.floats() | st.text(max_size=6)
    | st.sampled_from([{"__tensor__": "G.main.0.weight"}, {"__tensor__": "nope"}, {"__dict__": []},
                       {"__dict__": [["step", 1]]}, {"__dict__": [[1, 2, 3]]}]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["__dict__", "__tensor__", "x"]), children, max_size=2),
    max_leaves=6,
)
SECTIONS = ["model", "G", "G_ema", "D", "opt_g", "opt_d", "progress", "rng", "config", "data"]


def paths_of(tree, prefix=()):
    """Every place in a flattened tree where a value could be replaced."""
    yield prefix
    if isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from paths_of(value, prefix + (i,))
    elif isinstance(tree, dict) and "__dict__" in tree:
        for pair in tree["__dict__"]:
            yield from paths_of(pair[1], prefix + (pair[0],))


@settings(max_examples=max(1, round(60 * SCALE)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SECTIONS), st.integers(0, 10**6), JSON_VALUES)
def test_any_json_in_any_section_is_refused_or_loads(tmp_path, training_file, name, where, value):
    FUZZ_CASES["checkpoint"] += 1
    tree = json.loads(checkpoint.read_metadata(training_file).get(name, "null"))
    places = list(paths_of(tree))
    place = places[where % len(places)]

    def edit(header, payload):
        if not place:
            set_section(header, name, value)
        else:
            set_nested(name, list(place), value)(header, payload)

    path = craft(training_file, tmp_path / "fuzzed.safetensors", edit)
    for loader in (checkpoint.load, load_generator, load_discriminator, lambda p: resumable(p, training_file)):
        try:
            loader(path)
        except CheckpointError as error:
            assert_one_line_naming(error, path, "")


def resumable(path: Path, original: Path) -> None:
    """What `--resume` does with a checkpoint that load_latest accepts: it must restore without an exception
    (but DataError: whether the data position fits the photos is known only once they are prepared). The
    networks and optimisers are made from the `original` file's config: what the saved state restores into."""
    from facegan.data import DataError
    from facegan.models import ModelConfig
    from facegan.training.config import TrainConfig
    from facegan.training.state import create_state

    saved = checkpoint.load(path)
    check_fits(path, saved)
    config = TrainConfig.from_dict(checkpoint.load(original, sections=["config"])["config"])
    state = create_state(config, ModelConfig(**saved["model"]), list(range(24)), torch.device("cpu"))
    try:
        state.load_checkpoint(saved)
    except DataError:
        pass


# --- zip bombs across members --------------------------------------------------------------------------------


def zero_member(archive: zipfile.ZipFile, name: str, size: int) -> None:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w", force_zip64=True) as member:
        chunk = bytes(1 << 22)
        for _ in range(size // len(chunk)):
            member.write(chunk)


def test_a_zip_bomb_spread_over_many_members_is_skipped_without_inflating_it(tmp_path, monkeypatch):
    """12 members of 250 MiB of zeros, each under the per-member cap; 3 GB inflated before this fix."""
    from PIL import Image

    from facegan.data import PrepareConfig, prepare
    from facegan.data import sources

    good = tmp_path / "good.png"
    Image.new("RGB", (40, 40), (9, 9, 9)).save(good)
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(good, "a-good.png")
        for i in range(12):
            zero_member(archive, f"bomb{i:02d}.png", 250 * 2**20)
    assert path.stat().st_size < 4 * 2**20
    inflated = []
    real_read = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, name, pwd=None: inflated.append(name) or real_read(self, name, pwd))
    dataset = prepare(PrepareConfig(data=str(path), size=32, out=str(tmp_path / "out"), min_size=1, workers=1),
                      progress=False)
    assert len(dataset) == 1
    assert dataset.manifest["skipped"] == [{"source": f"bomb{i:02d}.png", "reason": "too large"} for i in range(12)]
    assert inflated == ["a-good.png"]
    assert sources.MAX_COMPRESSION_RATIO <= 200 and sources.MAX_ZIP_TOTAL_BYTES < 2**40


def test_the_schema_check_costs_no_seconds(tmp_path, training_file):
    """The meta-device build skips weight initialisation: torch's meta normal_ would import torch._dynamo (seconds)."""
    import subprocess
    import sys

    code = ("import sys, time, facegan; from facegan import checkpoint; started = time.monotonic(); facegan.load(); "
            f"checkpoint.load({str(training_file)!r}); "
            "print('torch._dynamo' in sys.modules, time.monotonic() - started)")
    dynamo, seconds = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                     env={**os.environ, "PYTHONWARNINGS": "ignore"}).stdout.split()
    assert dynamo == "False" and float(seconds) < 5
