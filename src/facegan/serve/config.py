"""Typed configuration of `facegan serve`."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import checkpoint_option, device_option, option, precision_option

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass
class ServeConfig:
    checkpoint: str | None = checkpoint_option()
    host: str = option("127.0.0.1", "address to listen on; anything but loopback makes the page reachable "
                                    "from other machines")
    port: int = option(7860, "port to listen on (0 picks a free one)")
    device: str = device_option()
    precision: str = precision_option()
    log_level: str = option("warning", "server log level (info logs every request)", choices=LOG_LEVELS)

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be within 0..65535, got {self.port}")
        if not self.host:
            raise ValueError("--host must not be empty")
