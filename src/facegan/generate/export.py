"""`facegan export`: the moving-average generator as an ONNX or TorchScript file for use without facegan.

The exported model maps latents `z` (float32, N x z_dim, any N) to images:
- `--output float`: float32 N x 3 x H x W in [0, 1] (channels first, as networks take them);
- `--output uint8`: uint8 N x H x W x 3 in 0..255 (channels last, as image files hold them), the same
  pixels that `FaceGenerator.faces` returns.
Latents from `facegan.models.latents_from_seeds` give the same faces as facegan's seeds.
"""
from __future__ import annotations

import copy
import json
import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..config import checkpoint_option, option
from ..files import write_atomically
from .generator import FaceGenerator

FORMATS = ("onnx", "torchscript")
OUTPUTS = ("float", "uint8")
ONNX_OPSET = 18
INSTALL_HINT = 'pip install "facegan[export]"'


@dataclass
class ExportConfig:
    checkpoint: str | None = checkpoint_option()
    format: str = option("onnx", "file format", choices=FORMATS)
    out: str = option("", "the file to write, e.g. generator.onnx or generator.pt")
    output: str = option("float", "float: N x 3 x H x W in [0, 1]; uint8: N x H x W x 3 in 0..255", choices=OUTPUTS)

    def validate(self) -> None:
        if not self.out:
            raise ValueError("--out is required: the file to write")
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"--output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")


class ImageOutput(nn.Module):
    """A generator followed by the conversion of its [-1, 1] output to [0, 1] floats or uint8 pixels."""

    def __init__(self, network: nn.Module, output: str):
        super().__init__()
        self.network = network
        self.uint8 = output == "uint8"

    def forward(self, z: Tensor) -> Tensor:
        images = self.network(z)
        if self.uint8:  # exactly facegan.data.images.to_uint8
            return images.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return images.add(1.0).mul(0.5).clamp(0, 1)


def model_metadata(generator: FaceGenerator, output: str) -> dict[str, str]:
    return {"producer": "facegan", "arch": generator.model.arch, "size": str(generator.size),
            "z_dim": str(generator.z_dim), "output": output,
            "layout": "NHWC uint8 0..255" if output == "uint8" else "NCHW float32 0..1"}


def export_generator(generator: FaceGenerator, config: ExportConfig) -> Path:
    """Write `generator` (latents -> images, any batch size) to `config.out` as ONNX or TorchScript."""
    config.validate()
    module = ImageOutput(copy.deepcopy(generator.network).cpu(), config.output).eval()
    example = torch.zeros(2, generator.z_dim)
    metadata = model_metadata(generator, config.output)
    if config.format == "onnx":
        return _export_onnx(module, example, metadata, Path(config.out))
    return _export_torchscript(module, example, metadata, Path(config.out))


def _export_onnx(module: nn.Module, example: Tensor, metadata: dict[str, str], out: Path) -> Path:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise RuntimeError(f"ONNX export needs onnx and onnxscript: {INSTALL_HINT}") from None
    with torch.inference_mode(False), torch.no_grad(), _quiet_logger("torch.onnx"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.* is deprecated", category=FutureWarning)  # torch's own
        program = torch.onnx.export(module, (example,), dynamo=True, input_names=["z"], output_names=["image"],
                                    dynamic_shapes={"z": {0: torch.export.Dim("batch")}},
                                    opset_version=ONNX_OPSET, verbose=False)
    model = program.model_proto
    onnx.helper.set_model_props(model, metadata)
    data = model.SerializeToString()
    return write_atomically(out, lambda handle: handle.write(data))


def _export_torchscript(module: nn.Module, example: Tensor, metadata: dict[str, str], out: Path) -> Path:
    extra = {"facegan.json": json.dumps(metadata)}
    with warnings.catch_warnings(), torch.no_grad():
        # TorchScript is deprecated in favour of torch.export, but it is what was asked for here
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated")
        traced = torch.jit.trace(module, example)
        return write_atomically(out, lambda handle: torch.jit.save(traced, handle, _extra_files=extra))


@contextmanager
def _quiet_logger(name: str):
    """Silence a library's warnings-level log chatter (torch.onnx lists every optional op it skips)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
