"""Fixtures for the reliability tests: a prepared tiny dataset, one torch thread (so runs are bit-reproducible)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facegan.data import PrepareConfig, prepare


@pytest.fixture(scope="session")
def prepared_faces(tmp_path_factory, face_folder) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "faces-32"
    prepare(PrepareConfig(data=str(face_folder), size=32, out=str(out), min_size=16, workers=1), progress=False)
    return out


@pytest.fixture
def one_thread():
    """Forked children and the parent must run the same kernels to give bit-identical weights."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
