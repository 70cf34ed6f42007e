"""Fingerprint: what ran where, and a stable id that separates incomparable runs."""

import dataclasses

from slimserve.bench.fingerprint import FLAGS_OF_INTEREST, command_line, fingerprint, fingerprint_id
from slimserve.bench.targets import target_names


def test_fingerprint_fields_and_id():
    fp = fingerprint(hardware_key="local-cpu", device="cpu", threads=2, command="slimserve bench")
    assert fp.cores >= 1 and fp.threads == 2 and fp.cpu_model and fp.gpu_name is None
    assert "torch" in fp.versions and "python" in fp.versions
    assert set(fp.cpu_flags) <= set(FLAGS_OF_INTEREST)
    assert len(fp.hostname_hash) == 12
    same = dataclasses.replace(fp, command="another command")
    assert fingerprint_id(same) == fingerprint_id(fp)  # the command does not change what the numbers depend on
    assert fingerprint_id(dataclasses.replace(fp, threads=1)) != fingerprint_id(fp)


def test_command_line():
    assert command_line(["/venv/lib/slimserve/__main__.py", "bench", "--target", "cpu"]) == (
        "python -m slimserve bench --target cpu"
    )
    assert command_line(["/usr/bin/slimserve", "bench", "a b"]) == "slimserve bench 'a b'"


def test_plugin_targets_are_listed():
    names = target_names()
    assert {"cpu", "cuda"} <= set(names)
    assert {"onnx-cpu", "onnx-cuda", "neuron-static"} <= set(names)  # registered, or listed with the import error


def test_package_is_callable_like_the_api():
    import pytest

    import slimserve
    from slimserve.errors import UserError

    assert callable(slimserve.bench)
    with pytest.raises(UserError, match="unknown target"):
        slimserve.bench(target="nope")
