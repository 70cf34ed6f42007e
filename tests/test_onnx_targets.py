"""ONNX targets are registered with the benchmark harness and explain what they cannot run."""

import pytest

pytest.importorskip("onnxruntime")

from slimserve.bench.targets import get_target, target_names  # noqa: E402


def test_targets_registered():
    assert {"onnx-cpu", "onnx-cuda", "neuron-static"} <= set(target_names())
    assert get_target("onnx-cpu").available() is None
    assert get_target("neuron-static").available() is None


def test_supports_explains_format_mismatch():
    cpu = get_target("onnx-cpu")
    assert "not 'onnx'" in cpu.supports({"format": "compressed-tensors"})
    assert cpu.supports({"format": "onnx", "steps": [{"kind": "export", "settings": {"graph": "fused"}}]}) is None
    assert cpu.supports({"format": "onnx", "steps": [{"kind": "export", "settings": {"graph": "optimum"}}]}) is None
    why = cpu.supports({"format": "onnx", "steps": [{"kind": "export", "settings": {"graph": "other"}}]})
    assert "fused, optimum" in why
    assert "onnx-static" in get_target("neuron-static").supports({"format": "onnx"})
    assert get_target("neuron-static").supports({"format": "onnx-static"}) is None


def test_onnx_loader_registered(tmp_path):
    from slimserve.loaders import LOADERS

    assert "onnx" in LOADERS and "onnx-static" in LOADERS
