"""examples/quickstart.ipynb runs from top to bottom without an error and shows its images inline."""
from pathlib import Path

import pytest

from facegan.settings import DEFAULT_MODEL, PRETRAINED_DIR, shipped_model

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="notebook tests need the test extra (nbformat, nbclient, ipykernel)")
    nbclient = pytest.importorskip("nbclient", reason="notebook tests need the test extra (nbformat, nbclient, ipykernel)")
    pytest.importorskip("ipykernel", reason="notebook tests need the test extra (nbformat, nbclient, ipykernel)")
    if shipped_model(DEFAULT_MODEL) is None:
        pytest.skip(f"the notebook loads the shipped model, and {PRETRAINED_DIR} has no {DEFAULT_MODEL}")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook with its outputs cleared"
    cache = tmp_path.parent / f"{tmp_path.name}-cache"
    monkeypatch.setenv("FACEGAN_CACHE", str(cache))  # the kernel inherits it: whatever lands there, the notebook left
    # timeout per cell: generous, for busy CI machines (the whole notebook takes about 30 CPU seconds)
    nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    shown = [output.get("data", {}) for output in outputs if output.output_type == "execute_result"]
    assert any("image/png" in data for data in shown), "the grid shows as an image"
    assert any("data:image/gif;base64" in data.get("text/html", "") for data in shown), "the walk plays as a GIF"
    printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert printed.count("mean P(real)") == 2
    assert not list(tmp_path.iterdir()), "the notebook cleans up after itself"
    assert not (cache / "prepared").exists(), "the notebook prepares its photos in its own temporary folder"
    errors = "".join(output.get("text", "") for output in outputs if output.get("name") == "stderr")
    assert "Warning" not in errors, errors
