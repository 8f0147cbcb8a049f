"""The comparison notebook runs top to bottom against a small trained model, and is stored without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.trained import shared_trained_model

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "compare_tiers.ipynb"


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path_factory, monkeypatch):
    model = shared_trained_model(tmp_path_factory)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", model.tracking_uri)
    monkeypatch.setenv("TIERING_DATA", str(model.data_dir))
    monkeypatch.setenv("TIERING_MODEL", model.uri)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Kernel `python3` runs on this interpreter (jupyter_client swaps the spec's `python` for sys.executable), so
    # the venv's packages are there. Any cell error raises CellExecutionError.
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert any("image/png" in output.get("data", {}) for output in outputs)  # the figures were drawn
    assert not any(output.get("output_type") == "error" for output in outputs)
