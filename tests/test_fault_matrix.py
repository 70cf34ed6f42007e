"""Issue 12's hostile and unlucky cases (bench/fault_matrix.py), one test each: tiny models, kills at hook points."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("fault_matrix", Path(__file__).parents[1] / "bench" / "fault_matrix.py")
fm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fm)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return fm.Env(tmp_path_factory.mktemp("faults"))


@pytest.mark.parametrize("name", list(fm.CASES))
def test_case(env, name):
    expected, observed, ok = fm.run_case(name, env)
    assert ok, f"{name}: expected {expected}; observed {observed}"
