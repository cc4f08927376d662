"""The checkpoint file format: one safetensors file, tensors plus JSON metadata.

Loading never unpickles anything: safetensors holds only raw tensors, and everything else
(configs, step counters, optimiser hyper-parameters, data order) is JSON in the header.
Nested state (an optimiser's `state_dict()`, say) is split into a JSON tree whose tensor
leaves point at named tensors, so any mix of tensors and plain values round-trips exactly.

Since format 2 the metadata holds a sha256 checksum of everything else in the file (the header
without the checksum, as canonical JSON, then the tensor bytes); loading verifies it, so a
truncated, bit-flipped or otherwise damaged file is refused by name. Format 1 files (no checksum)
still load.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from .files import write_atomically
from .models import ModelConfig
from .runs import CHECKPOINT_DIR, CHECKPOINT_PATTERN, list_checkpoints

FORMAT = "facegan-checkpoint"
FORMAT_VERSION = 2  # 2: sha256 checksum in the metadata
CHECKSUM_KEY = "checksum"
_CHECKSUM_PLACEHOLDER = "sha256:" + "0" * 64
_READ_CHUNK = 1 << 20


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit; the message names the file and the problem."""


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file as is; a run directory gives its newest checkpoint."""
    path = Path(path)
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
    """Inverse of `flatten`: rebuild the nested structure, dict keys with their original types."""
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
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as handle:
        header = _read_header(path, handle)
        metadata = header.get("__metadata__") or {}
        if metadata.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a facegan checkpoint")
        version = _format_version(path, metadata)
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: written by a newer facegan (format {version}, this one reads up to {FORMAT_VERSION}); upgrade facegan"
            )
        if verify and (version >= 2 or CHECKSUM_KEY in metadata):  # a flipped version digit must not skip it
            _verify_checksum(path, handle, header, metadata)
    return metadata


def _read_header(path: Path, handle) -> dict:
    """The parsed safetensors header; refuses empty, truncated and malformed files by name."""
    size = os.fstat(handle.fileno()).st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    prefix = handle.read(8)
    length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
    if length < 2 or 8 + length > size:
        raise CheckpointError(f"{path}: truncated or not a checkpoint ({size} bytes, no complete header)")
    try:
        header = json.loads(handle.read(length))
        data_end = max((int(info["data_offsets"][1]) for key, info in header.items() if key != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise CheckpointError(f"{path}: damaged checkpoint header ({error})") from None
    if 8 + length + data_end > size:
        raise CheckpointError(f"{path}: truncated: {size} bytes, the header promises {8 + length + data_end}")
    return header


def _format_version(path: Path, metadata: dict) -> int:
    try:
        return int(metadata.get("format_version", "0"))
    except ValueError:
        raise CheckpointError(f"{path}: damaged checkpoint (format version {metadata.get('format_version')!r})") from None


def _verify_checksum(path: Path, handle, header: dict, metadata: dict) -> None:
    expected = metadata.get(CHECKSUM_KEY)
    if not expected:
        raise CheckpointError(f"{path}: damaged checkpoint (its checksum is missing)")
    actual = content_digest(header, iter(lambda: handle.read(_READ_CHUNK), b""))
    if actual != expected:
        raise CheckpointError(f"{path}: damaged checkpoint (checksum mismatch: the file changed after it was written)")


def load(path: str | os.PathLike, sections: list[str] | None = None) -> dict[str, Any]:
    """Read a checkpoint back into nested state; `sections` limits which ones (and their tensors) are loaded."""
    metadata = read_metadata(path)
    wanted = sections or [key for key in metadata if key not in ("format", "format_version", "kind", CHECKSUM_KEY)]
    missing = [name for name in wanted if name not in metadata]
    if missing:
        raise CheckpointError(f"{path}: checkpoint has no {', '.join(missing)} (it is a {metadata['kind']!r} checkpoint)")
    trees = {name: json.loads(metadata[name]) for name in wanted}
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                if key.split(".", 1)[0] in trees:
                    tensors[key] = f.get_tensor(key)
    except Exception as error:
        raise CheckpointError(f"{path}: damaged checkpoint ({error})") from None
    state = {name: unflatten(tree, tensors) for name, tree in trees.items()}
    state["kind"] = metadata["kind"]
    return state


def rebuild_network(path: Path, saved: dict[str, Any], weights: str, build, what: str) -> tuple[torch.nn.Module, ModelConfig]:
    """`build(config)` from the checkpoint's model config, loaded with its `weights` section; a mismatch names `path` and `what`."""
    try:
        model = ModelConfig(**saved["model"])
        network = build(model)
        network.load_state_dict(saved[weights])
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: {what} weights do not fit its config ({error})") from None
    return network, model
