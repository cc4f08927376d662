"""The checkpoint file format: one safetensors file, tensors plus JSON metadata.

Loading never unpickles anything: safetensors holds only raw tensors, and everything else
(configs, step counters, optimiser hyper-parameters, data order) is JSON in the header.
Nested state (an optimiser's `state_dict()`, say) is split into a JSON tree whose tensor
leaves point at named tensors, so any mix of tensors and plain values round-trips exactly.

Since format 2 the metadata holds a sha256 checksum of everything else in the file (the header
without the checksum, as canonical JSON, then the tensor bytes); loading verifies it, so a
truncated, bit-flipped or otherwise damaged file is refused by name. Format 1 files (no checksum)
still load.

A checksum only proves that a file is whole: anyone can write a file with a valid one. So `load`
also checks the header against a schema before it reads a tensor or builds a network: the JSON
types of every section facegan reads, every tensor reference, the architecture the file names
(a registered one, a supported size, a width and latent size no facegan model exceeds) and the
dtype and shape of every stored weight and optimiser tensor against that architecture built on
the `meta` device (no memory); then every float tensor must hold only finite values. A file
that fails is refused with one line that names it; nothing else is raised.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from .files import write_atomically
from .models import ModelConfig, build_discriminator, build_generator, get_architecture
from .models.registry import MAX_WIDTH, MAX_Z_DIM
from .runs import CHECKPOINT_DIR, CHECKPOINT_PATTERN, list_checkpoints
from .settings import SIZES, shipped_model

FORMAT = "facegan-checkpoint"
FORMAT_VERSION = 2  # 2: sha256 checksum in the metadata
CHECKSUM_KEY = "checksum"
_CHECKSUM_PLACEHOLDER = "sha256:" + "0" * 64
_READ_CHUNK = 1 << 20
_RESERVED = ("format", "format_version", "kind", CHECKSUM_KEY)

# The largest model any checkpoint may declare. No facegan architecture is trained near these (the defaults are
# width 16-64 and z_dim 100); they keep a crafted header from making a loader allocate gigabytes.
MAX_PARAMETERS = 2**30  # per network: 4 GiB of float32 weights
MAX_DEPTH = 64  # JSON nesting of one section; facegan writes at most 6
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit
_DTYPES = {"F64": (torch.float64, 8), "F32": (torch.float32, 4), "F16": (torch.float16, 2),
           "BF16": (torch.bfloat16, 2), "I64": (torch.int64, 8), "I32": (torch.int32, 4), "I16": (torch.int16, 2),
           "I8": (torch.int8, 1), "U8": (torch.uint8, 1), "BOOL": (torch.bool, 1)}
_DTYPE_NAMES = {dtype: name for name, (dtype, _) in _DTYPES.items()}
# The networks and optimisers a checkpoint may hold, and what builds each kind of network.
NETWORKS = {"G": "generator", "G_ema": "generator", "D": "discriminator"}
BUILDERS = {"generator": build_generator, "discriminator": build_discriminator}
OPTIMIZERS = {"opt_g": "G", "opt_d": "D"}
_MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")  # Adam's per-parameter state


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit; the message names the file and the problem."""


class _Unusable(Exception):
    """A schema problem inside one section; `load` turns it into a CheckpointError naming the file.

    The message reads "unusable checkpoint (<problem>)" unless `whole` says the problem is a sentence of its own.
    """

    def __init__(self, problem: str, whole: bool = False) -> None:
        super().__init__(problem if whole else f"unusable checkpoint ({problem})")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file as is; a run directory gives its newest checkpoint; a shipped model's name (`celeba64`)
    its file, unless a file or folder of that name is in the working directory."""
    path = Path(path)
    shipped = None if path.exists() else shipped_model(str(path))
    if shipped is not None:
        return shipped
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise CheckpointError(f"{path}: run directory holds no checkpoint ({CHECKPOINT_DIR}/{CHECKPOINT_PATTERN})")
        return found[0]
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or run directory")
    return path


def flatten(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of `tree` into `tensors` (keyed by its path) and return a JSON-able tree."""
    if isinstance(tree, torch.Tensor):
        tensors[prefix] = tree.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": prefix}
    if isinstance(tree, dict):
        return {"__dict__": [[key, flatten(value, f"{prefix}.{key}", tensors)] for key, value in tree.items()]}
    if isinstance(tree, (list, tuple)):
        return [flatten(value, f"{prefix}.{i}", tensors) for i, value in enumerate(tree)]
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot store {type(tree).__name__} at {prefix!r} in a checkpoint")


def unflatten(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `flatten`: rebuild the nested structure, dict keys with their original types.

    For trusted trees only: `load` checks a file's trees (`_parse_section`) before it rebuilds them.
    """
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        return {key: unflatten(value, tensors) for key, value in tree["__dict__"]}
    if isinstance(tree, list):
        return [unflatten(value, tensors) for value in tree]
    return tree


def save(path: str | os.PathLike, state: dict[str, Any], kind: str) -> Path:
    """Write `state` (a tree of tensors and JSON values, top-level keys are sections) atomically."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "kind": kind}
    for section, tree in state.items():
        metadata[section] = json.dumps(flatten(tree, section, tensors))
    metadata[CHECKSUM_KEY] = _CHECKSUM_PLACEHOLDER
    data = memoryview(save_safetensors(tensors, metadata=metadata))
    header_end = 8 + int.from_bytes(data[:8], "little")
    header = _with_checksum(bytes(data[:header_end]), data[header_end:])

    def write(handle) -> None:
        handle.write(header)
        handle.write(data[header_end:])

    write_atomically(path, write, durable=True)
    return path


def _with_checksum(header: bytes, payload) -> bytes:
    """`header` (the length prefix and JSON) with the placeholder replaced by the real checksum, same length."""
    placeholder = _CHECKSUM_PLACEHOLDER.encode()
    assert header.count(placeholder) == 1, "checksum placeholder must occur exactly once"
    digest = content_digest(json.loads(header[8:]), [payload])
    return header.replace(placeholder, digest.encode())


def content_digest(header: dict, payload_chunks) -> str:
    """sha256 over the header minus its checksum (canonical JSON) and then the tensor bytes."""
    metadata = {k: v for k, v in header.get("__metadata__", {}).items() if k != CHECKSUM_KEY}
    digest = hashlib.sha256(json.dumps({**header, "__metadata__": metadata}, sort_keys=True).encode())
    for chunk in payload_chunks:
        digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def read_metadata(path: str | os.PathLike, verify: bool = True) -> dict[str, str]:
    """The metadata of a checkpoint, after checking that the file is whole (and its checksum, with `verify`)."""
    return _inspect(Path(path), verify)[1]


def _inspect(path: Path, verify: bool) -> tuple[dict, dict[str, str]]:
    """The checked safetensors header of `path` and its metadata."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as handle:
        header = _read_header(path, handle)
        metadata = header.get("__metadata__", {})
        if metadata.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a facegan checkpoint")
        version = _format_version(path, metadata)
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: written by a newer facegan (format {version}, this one reads up to {FORMAT_VERSION}); upgrade facegan"
            )
        if verify and (version >= 2 or CHECKSUM_KEY in metadata):  # a flipped version digit must not skip it
            _verify_checksum(path, handle, header, metadata)
        if "kind" not in metadata:
            raise CheckpointError(f"{path}: unusable checkpoint (its metadata says not what kind of checkpoint it is)")
    return header, metadata


def _read_header(path: Path, handle) -> dict:
    """The parsed safetensors header; refuses empty, truncated and malformed files by name."""
    size = os.fstat(handle.fileno()).st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    prefix = handle.read(8)
    length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
    if length < 2 or 8 + length > size:
        raise CheckpointError(f"{path}: truncated or not a checkpoint ({size} bytes, no complete header)")
    if length > MAX_HEADER_BYTES:
        raise CheckpointError(f"{path}: not a checkpoint (a {length}-byte header; "
                              f"safetensors allows {MAX_HEADER_BYTES})")
    try:
        header = json.loads(handle.read(length))
    except (ValueError, RecursionError) as error:  # RecursionError: JSON nested thousands of levels deep
        raise CheckpointError(f"{path}: damaged checkpoint header ({_short(error, 80, quote=False)})") from None
    problem = _header_problem(header)
    if problem:
        raise CheckpointError(f"{path}: damaged checkpoint header ({problem})")
    data_end = max((info["data_offsets"][1] for key, info in header.items() if key != "__metadata__"), default=0)
    if 8 + length + data_end > size:
        raise CheckpointError(f"{path}: truncated: {size} bytes, the header promises {8 + length + data_end}")
    return header


def _header_problem(header: Any) -> str | None:
    """What is wrong with a parsed safetensors header, if anything (the rules safetensors itself applies)."""
    if not isinstance(header, dict):
        return f"a JSON {type(header).__name__}, not an object"
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values()):
        return "__metadata__ is not a map of strings"
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(info, dict) or info.get("dtype") not in _DTYPES:
            return f"tensor {_short(key)} has no dtype facegan writes"
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not (isinstance(shape, list) and len(shape) <= 8 and all(_is_count(n) for n in shape)):
            return f"tensor {_short(key)} has a malformed shape"
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(n) for n in offsets)
                and offsets[1] - offsets[0] == math.prod(shape) * _DTYPES[info["dtype"]][1]):
            return f"tensor {_short(key)} has data offsets that do not fit its shape"
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _format_version(path: Path, metadata: dict) -> int:
    try:
        return int(metadata.get("format_version", "0"))
    except ValueError:
        version = _short(metadata.get("format_version"))
        raise CheckpointError(f"{path}: damaged checkpoint (format version {version})") from None


def _verify_checksum(path: Path, handle, header: dict, metadata: dict) -> None:
    expected = metadata.get(CHECKSUM_KEY)
    if not expected:
        raise CheckpointError(f"{path}: damaged checkpoint (its checksum is missing)")
    actual = content_digest(header, iter(lambda: handle.read(_READ_CHUNK), b""))
    if actual != expected:
        raise CheckpointError(f"{path}: damaged checkpoint (checksum mismatch: the file changed after it was written)")


def load(path: str | os.PathLike, sections: list[str] | None = None) -> dict[str, Any]:
    """Read a checkpoint back into nested state; `sections` limits which ones (and their tensors) are loaded.

    Everything is checked (see the module's docstring) before a tensor is read: a file that is not whole,
    or whose header does not fit the schema and the architecture it names, raises CheckpointError.
    """
    path = Path(path)
    header, metadata = _inspect(path, verify=True)
    wanted = list(sections or [key for key in metadata if key not in _RESERVED])
    missing = [name for name in wanted if name not in metadata]
    if missing:
        raise CheckpointError(f"{path}: checkpoint has no {', '.join(missing)} "
                              f"(its kind is {_short(metadata['kind'])})")
    specs = {key: TensorSpec(key, info["dtype"], tuple(info["shape"]))
             for key, info in header.items() if key != "__metadata__"}
    try:
        state = {name: _parse_section(name, metadata[name], specs) for name in wanted}
        if "model" not in state and any(name in state for name in (*NETWORKS, *OPTIMIZERS)):
            if "model" not in metadata:
                raise _Unusable("it holds network weights but no model description")
            state["model"] = _parse_section("model", metadata["model"], specs)
        check_state(state, metadata["kind"])
    except _Unusable as problem:
        raise CheckpointError(f"{path}: {problem}") from None
    tensors = _read_tensors(path, _tensor_specs(state))
    state = {name: _materialize(tree, tensors) for name, tree in state.items() if name in wanted}
    state["kind"] = metadata["kind"]
    return state


def load_section(path: str | os.PathLike, kind: str, what: str) -> dict[str, Any]:
    """The section called `kind` of a file saved with that kind (a "directions" or "latent" file, say);
    CheckpointError naming the file, and calling it a `what`, when it is anything else."""
    state = load(path)
    section = state.get(kind)
    if state.get("kind") != kind or not isinstance(section, dict):
        raise CheckpointError(f"{path}: not a {what} (its kind is {_short(state.get('kind'))})")
    return section


@dataclass(frozen=True)
class TensorSpec:
    """A stored tensor as its header describes it: what the schema checks before any tensor data is read."""

    key: str
    dtype: str
    shape: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.dtype} {list(self.shape)}"


def _parse_section(name: str, text: str, specs: dict[str, TensorSpec]) -> Any:
    """One section's JSON tree as nested dicts and lists with TensorSpec leaves; _Unusable if malformed."""
    try:
        tree = json.loads(text)
    except RecursionError:
        raise _Unusable(f"{name} is JSON nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as error:
        raise _Unusable(f"{name} is not JSON: {_short(error, 80, quote=False)}") from None
    return _rebuild(tree, name, specs, 0)


def _rebuild(tree: Any, section: str, specs: dict[str, TensorSpec], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise _Unusable(f"{section} is JSON nested more than {MAX_DEPTH} levels deep")
    if isinstance(tree, list):
        return [_rebuild(value, section, specs, depth + 1) for value in tree]
    if not isinstance(tree, dict):
        return tree  # None, bool, int, float, str
    if set(tree) == {"__tensor__"}:
        key = tree["__tensor__"]
        if not isinstance(key, str) or key not in specs:
            raise _Unusable(f"{section} refers to a tensor {_short(key)} that the file does not hold")
        if key != section and not key.startswith(section + "."):
            raise _Unusable(f"{section} refers to the tensor {_short(key)} of another section")
        return specs[key]
    pairs = tree.get("__dict__") if set(tree) == {"__dict__"} else None
    if not isinstance(pairs, list):
        raise _Unusable(f"{section} holds a JSON object that is neither a dict nor a tensor reference")
    rebuilt = {}
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int, float, bool, type(None)))):
            raise _Unusable(f"{section} holds a malformed dict entry {_short(pair)}")
        rebuilt[pair[0]] = _rebuild(pair[1], section, specs, depth + 1)
    return rebuilt


def check_state(state: dict[str, Any], kind: str) -> None:
    """Raise _Unusable unless the parsed sections have the types facegan's loaders rely on.

    The networks (and optimiser moments) must have exactly the tensors, dtypes and shapes of the architecture
    in `state["model"]`, which is built on the meta device for the comparison: no weights are allocated.
    """
    model = model_config(state["model"]) if "model" in state else None
    networks = {name: state[name] for name in NETWORKS if name in state}
    optimizers = {name: state[name] for name in OPTIMIZERS if name in state}
    if model is not None and (networks or optimizers):
        built = _meta_networks(model, {NETWORKS[name] for name in networks}
                               | {NETWORKS[OPTIMIZERS[name]] for name in optimizers})
        for name, tree in networks.items():
            _check_network(name, tree, built[NETWORKS[name]], model)
        for name, tree in optimizers.items():
            _check_optimizer(name, tree, built[NETWORKS[OPTIMIZERS[name]]], OPTIMIZERS[name])
    if "progress" in state:
        _check_progress(state["progress"], kind)
    if "rng" in state:
        _check_rng(state["rng"])
    for name in ("info", "config", "data", "augment"):
        if name in state and not isinstance(state[name], dict):
            raise _Unusable(f"{name} is a JSON {_json_type(state[name])}, not a dict")
    if "config" in state and not isinstance(state["config"].get("prepare", {}), dict):
        raise _Unusable("config's prepare is not a dict")
    if "info" in state:  # a model card, shown as JSON by `serve`: names that are strings, numbers that are finite
        _check_card(state["info"])


def _check_card(tree: Any) -> None:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            odd = [key for key in node if not isinstance(key, str)]
            if odd:
                raise _Unusable(f"info has a name that is not a string ({_short(odd[0])})")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, float) and not math.isfinite(node):
            raise _Unusable(f"info holds the number {node}")
        elif isinstance(node, TensorSpec):
            raise _Unusable("info holds a tensor")


def model_config(tree: Any) -> ModelConfig:
    """The ModelConfig a checkpoint's model section describes; _Unusable unless facegan can build it."""
    if not isinstance(tree, dict):
        raise _Unusable(f"model is a JSON {_json_type(tree)}, not a dict")
    unknown = set(tree) - {"arch", "size", "z_dim", "width"}
    if unknown:
        raise _Unusable(f"model has unknown field {_short(sorted(map(str, unknown))[0])}")
    arch = tree.get("arch")
    if not isinstance(arch, str):
        raise _Unusable(f"model names no architecture (arch {_short(arch)})")
    try:
        get_architecture(arch)
    except ValueError as error:
        raise _Unusable(f"model: {_short(error, 120, quote=False)}") from None
    limits = {"size": None, "z_dim": MAX_Z_DIM, "width": MAX_WIDTH}
    for field, limit in limits.items():
        value = tree.get(field, getattr(ModelConfig, field))
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Unusable(f"model {field} is {_short(value)}, not a whole number")
        if field == "size" and value not in SIZES:
            raise _Unusable(f"model size {value} is not one facegan supports ({', '.join(map(str, SIZES))})")
        if limit is not None and not 1 <= value <= limit:
            raise _Unusable(f"model {field} {value} is outside what any facegan model uses (1 to {limit})")
    return ModelConfig(**tree)


class _NoInitialisation(torch.overrides.TorchFunctionMode):
    """Skips weight initialisation, which means nothing on the meta device (tensors there hold no values) and
    costs seconds there: torch's meta `normal_` imports torch._dynamo on first use."""

    _SKIPPED = frozenset({torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.zero_, torch.Tensor.fill_})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._SKIPPED or getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def build_on_meta(model: ModelConfig, what: str) -> torch.nn.Module:
    """The "generator" or "discriminator" of `model` on the meta device: shapes and dtypes, no memory, no time."""
    with torch.device("meta"), _NoInitialisation():
        return BUILDERS[what](model)


def _meta_networks(model: ModelConfig, which: set[str]) -> dict[str, torch.nn.Module]:
    """The networks of `model` built on the meta device (shapes and dtypes, no memory); _Unusable if too big."""
    built = {}
    try:
        for what in sorted(which):
            built[what] = build_on_meta(model, what)
    except (TypeError, ValueError, RuntimeError) as error:
        raise _Unusable(f"its {model.arch} model cannot be built ({_short(error, 120, quote=False)})") from None
    for what, network in built.items():
        count = sum(parameter.numel() for parameter in network.parameters())
        if count > MAX_PARAMETERS:
            raise _Unusable(f"its {model.arch} {what} would have {count:,} parameters, "
                            f"more than any facegan model ({MAX_PARAMETERS:,})")
    return built


def _check_network(name: str, tree: Any, network: torch.nn.Module, model: ModelConfig) -> None:
    what = NETWORKS[name]
    fits = (f"{what} weights do not fit the {model.arch} model it names "
            f"({model.size} px, z_dim {model.z_dim}, width {model.width})")
    if not isinstance(tree, dict):
        raise _Unusable(f"{fits}: {name} is a JSON {_json_type(tree)}, not a dict of tensors", whole=True)
    expected = network.state_dict()
    for key, value in tree.items():
        if key not in expected:
            raise _Unusable(f"{fits}: {name} holds {_short(key)}, which the model has not", whole=True)
        want = _spec(key, expected[key])
        if not isinstance(value, TensorSpec) or (_stored_dtype(value, want), value.shape) != (want.dtype, want.shape):
            found = value.describe() if isinstance(value, TensorSpec) else f"a JSON {_json_type(value)}"
            raise _Unusable(f"{fits}: {name}.{key} is {found}, the model needs {want.describe()}", whole=True)
    absent = [key for key in expected if key not in tree]
    if absent:
        raise _Unusable(f"{fits}: {name} lacks {_short(absent[0])}", whole=True)


HALF_DTYPES = ("F16", "BF16")  # a float weight may be stored at half size (the shipped file's discriminator); loading casts


def _stored_dtype(value: TensorSpec, want: TensorSpec) -> str:
    """The dtype `value` counts as: a half-size float where the model's weight is float32 counts as float32."""
    return want.dtype if want.dtype == "F32" and value.dtype in HALF_DTYPES else value.dtype


def _check_optimizer(name: str, tree: Any, network: torch.nn.Module, owner: str) -> None:
    """An Adam state_dict for `network`'s parameters: groups that list each parameter once, moments of their shapes."""
    parameters = [_spec(str(i), parameter) for i, parameter in enumerate(network.parameters())]
    groups = tree.get("param_groups") if isinstance(tree, dict) else None
    if not (isinstance(tree.get("state") if isinstance(tree, dict) else None, dict) and isinstance(groups, list)
            and groups and all(isinstance(group, dict) for group in groups)):
        raise _Unusable(f"{name} is not an optimiser state (a dict of state and parameter groups)")
    listed = []
    for group in tree["param_groups"]:
        for key, value in group.items():
            if key == "params":
                if not isinstance(value, list) or not all(_is_count(i) for i in value):
                    raise _Unusable(f"{name}'s parameter group lists {_short(value)}, not parameter numbers")
                listed += value
            elif not _plain_setting(value):
                raise _Unusable(f"{name}'s setting {_short(key)} is {_short(value)}")
    if sorted(listed) != list(range(len(parameters))):
        raise _Unusable(f"{name}'s parameter groups do not list the {len(parameters)} parameters of {owner} once each")
    for index, entry in tree["state"].items():
        if not _is_count(index) or index >= len(parameters) or not isinstance(entry, dict):
            raise _Unusable(f"{name} holds state {_short(index)} for no parameter of {owner}")
        parameter = parameters[index]
        for key, value in entry.items():
            if isinstance(value, TensorSpec):
                if value.shape == () and value.dtype in ("F32", "F64", "I64"):
                    continue  # the step count
                if (value.dtype, value.shape) == (parameter.dtype, parameter.shape):
                    continue
                raise _Unusable(f"{name}'s {_short(key)} for parameter {index} of {owner} is {value.describe()}, "
                                f"the parameter is {parameter.describe()}")
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if key in _MOMENTS or not number:  # an old torch's step count is a plain number
                raise _Unusable(f"{name}'s {_short(key)} for parameter {index} of {owner} is {_short(value)}")


def _spec(key: str, tensor: torch.Tensor) -> TensorSpec:
    """How a tensor of the meta-built model would be described in a header."""
    return TensorSpec(key, _DTYPE_NAMES.get(tensor.dtype, str(tensor.dtype)), tuple(tensor.shape))


def _plain_setting(value: Any) -> bool:
    """An optimiser hyper-parameter: None, a bool, a string, a finite number, or a list of those."""
    if isinstance(value, list):
        return len(value) <= 8 and all(_plain_setting(item) for item in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (bool, int, str))


def _check_progress(tree: Any, kind: str) -> None:
    if not isinstance(tree, dict):
        raise _Unusable(f"progress is a JSON {_json_type(tree)}, not a dict")
    for key in ("step", "images_seen"):
        if not _is_count(tree.get(key)):
            raise _Unusable(f"progress {key} is {_short(tree.get(key))}, not a whole number >= 0")
    seconds = tree.get("train_seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise _Unusable(f"progress train_seconds is {_short(seconds)}, not a finite number >= 0")
    if kind == "training" or "order" in tree:
        order = tree.get("order")
        if not (isinstance(order, dict) and _is_count(order.get("epoch")) and _is_count(order.get("position"))):
            raise _Unusable(f"progress order is {_short(order)}, not whole numbers epoch and position")


def _check_rng(tree: Any) -> None:
    size = tuple(torch.get_rng_state().shape)
    if not (isinstance(tree, dict) and set(tree) <= {"torch", "cuda"} and isinstance(tree.get("torch"), TensorSpec)
            and (tree["torch"].dtype, tree["torch"].shape) == ("U8", size)):
        raise _Unusable(f"rng is not a random-generator state (U8 {list(size)})")
    cuda = tree.get("cuda", [])
    if not (isinstance(cuda, list) and all(isinstance(s, TensorSpec) and s.dtype == "U8" and len(s.shape) == 1
                                           for s in cuda)):
        raise _Unusable("rng cuda is not a list of random-generator states")


def _tensor_specs(tree: Any) -> dict[str, TensorSpec]:
    """Every TensorSpec in a parsed state."""
    found, stack = {}, [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, TensorSpec):
            found[node.key] = node
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _read_tensors(path: Path, specs: dict[str, TensorSpec]) -> dict[str, torch.Tensor]:
    """The tensors of `specs`, each refused unless it holds only finite values."""
    tensors = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in sorted(specs):
                tensors[key] = f.get_tensor(key)
    except Exception as error:  # safetensors' own checks of a header that passed ours
        raise CheckpointError(f"{path}: damaged checkpoint ({_short(error, 120, quote=False)})") from None
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: unusable checkpoint (tensor {_short(key)} holds NaN or infinite values)")
    return tensors


def _materialize(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, TensorSpec):
        return tensors[tree.key]
    if isinstance(tree, dict):
        return {key: _materialize(value, tensors) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_materialize(value, tensors) for value in tree]
    return tree


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)


def _short(value: Any, limit: int = 60, quote: bool = True) -> str:
    """repr(value) (or, without `quote`, the text) on one line, cut to `limit` characters: a message stays one
    readable line whatever a file holds."""
    text = repr(value) if quote else " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def rebuild_network(path: Path, saved: dict[str, Any], weights: str, build, what: str) -> tuple[torch.nn.Module, ModelConfig]:
    """`build(config)` from the checkpoint's model config, loaded with its `weights` section; a mismatch names `path` and `what`.

    `load` has already checked the weights against the model on the meta device, so nothing big is built for a
    file whose header promises more than it holds.
    """
    try:
        model = ModelConfig(**saved["model"])
        network = build(model)
        network.load_state_dict(saved[weights])
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise CheckpointError(f"{path}: {what} weights do not fit its config ({_short(error, 120, quote=False)})") from None
    return network, model
