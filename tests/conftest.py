import os
import shutil
import sys

import pytest

from slimserve.testing import make_tiny_llama

# litellm fetches its model price map from GitHub at import unless told to use its bundled copy (no network here)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# Ray clusters started by the tests listen on 127.0.0.1, not on the machine's network interface (read at ray import)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A tiny random Llama (2 layers, hidden 64, GQA 4/2, tied embeddings) saved as an HF dir."""
    return make_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture()
def catalog_dir(tmp_path, monkeypatch):
    path = tmp_path / "catalog"
    monkeypatch.setenv("SLIMSERVE_CATALOG", str(path))
    return path


def pytest_report_header(config):
    return f"python {sys.version.split()[0]}; chromium: {shutil.which('chromium') or 'absent'}"
