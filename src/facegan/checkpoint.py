"""The checkpoint file format: one safetensors file, tensors plus JSON metadata.

Loading never unpickles anything: safetensors holds only raw tensors, and everything else
(configs, step counters, optimiser hyper-parameters, data order) is JSON in the header.
Nested state (an optimiser's `state_dict()`, say) is split into a JSON tree whose tensor
leaves point at named tensors, so any mix of tensors and plain values round-trips exactly.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from .files import write_atomically

FORMAT = "facegan-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_GLOB = "checkpoints/ckpt-*.safetensors"


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit; the message names the file and the problem."""


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file as is; a run directory gives its newest checkpoint."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob(CHECKPOINT_GLOB), reverse=True)
        if not found:
            raise CheckpointError(f"{path}: run directory holds no checkpoint ({CHECKPOINT_GLOB})")
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
    data = save_safetensors(tensors, metadata=metadata)
    write_atomically(path, lambda handle: handle.write(data), durable=True)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as error:  # safetensors raises several types for damaged headers
        raise CheckpointError(f"{path}: not a readable checkpoint ({error})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a facegan checkpoint")
    version = int(metadata.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer facegan (format {version}, this one reads up to {FORMAT_VERSION}); upgrade facegan"
        )
    return metadata


def load(path: str | os.PathLike, sections: list[str] | None = None) -> dict[str, Any]:
    """Read a checkpoint back into nested state; `sections` limits which ones (and their tensors) are loaded."""
    metadata = read_metadata(path)
    wanted = sections or [key for key in metadata if key not in ("format", "format_version", "kind")]
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
