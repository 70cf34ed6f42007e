"""Registry plugins: imported on first lookup, a missing optional dependency remembered and shown by name."""

from __future__ import annotations

import sys

import pytest

from slimserve.errors import UserError
from slimserve.registry import Registry


@pytest.fixture()
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path; write(name, code) makes a module there (removed from sys.modules afterwards)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written = []

    def write(name: str, code: str) -> str:
        (tmp_path / f"{name}.py").write_text(code)
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


REG = "import tests.test_registry as t\nREG = t.CURRENT\n"
CURRENT: Registry | None = None


def _registry(*plugins: str) -> Registry:
    global CURRENT
    CURRENT = Registry("widget", plugins=plugins)
    return CURRENT


def test_plugins_load_on_first_lookup(plugin_dir):
    mod = plugin_dir("wplug_ok", REG + "REG.add('round', 1)\nREG.add('square', 2)\n")
    reg = _registry(mod)
    assert mod not in sys.modules  # nothing imported until asked
    assert reg.get("square") == 2
    assert reg.names() == ["round", "square"] and "round" in reg
    assert reg.items() == [("round", 1), ("square", 2)]  # registration order


def test_missing_dependency_is_named_when_asked_for(plugin_dir):
    ok = plugin_dir("wplug_ok2", REG + "REG.add('round', 1)\n")
    broken = plugin_dir("wplug_broken", "import not_a_real_package_xyz\n")
    reg = _registry(ok, f"{broken}:hexagon,star")
    assert reg.names() == ["round"]
    assert reg.unavailable() == {"hexagon": "not_a_real_package_xyz not installed", "star": (
        "not_a_real_package_xyz not installed")}  # fmt: skip
    with pytest.raises(UserError, match="widget 'star' is not available: not_a_real_package_xyz not installed"):
        reg.get("star", field="--widget")
    with pytest.raises(UserError) as e:
        reg.get("oval")
    assert e.value.allowed == [
        "round",
        "hexagon (unavailable: not_a_real_package_xyz not installed)",
        "star (unavailable: not_a_real_package_xyz not installed)",
    ]


def test_plugin_without_declared_names_is_listed_by_module(plugin_dir):
    reg = _registry("wplug_absent_module")
    assert reg.unavailable() == {"wplug_absent_module": "wplug_absent_module is missing"}
    assert reg.choices() == ["wplug_absent_module (unavailable: wplug_absent_module is missing)"]


def test_a_bug_in_a_plugin_is_not_hidden(plugin_dir):
    mod = plugin_dir("wplug_bug", "from slimserve.errors import NoSuchThing\n")
    with pytest.raises(ImportError, match="NoSuchThing"):
        _registry(mod).names()


def test_a_plugin_that_registers_nothing_is_an_error(plugin_dir):
    mod = plugin_dir("wplug_empty", "X = 1\n")
    with pytest.raises(RuntimeError, match="wplug_empty did not register widget anything"):
        _registry(mod).names()
    mod = plugin_dir("wplug_partial", REG + "REG.add('round', 1)\n")
    with pytest.raises(RuntimeError, match="did not register widget star"):
        _registry(f"{mod}:round,star").names()


def test_builtin_registries_declare_their_plugins():
    from slimserve.bench.targets import TARGETS
    from slimserve.cli import COMMANDS
    from slimserve.loaders import LOADERS
    from slimserve.router.formats import EXPORTERS
    from slimserve.steps import STEPS

    assert {"cpu", "onnx-cpu", "neuron-static"} <= set(TARGETS.names())
    assert {"hf", "onnx", "onnx-static"} <= set(LOADERS.names())
    assert {"litellm", "openrouter", "routellm", "json"} <= set(EXPORTERS.names())
    assert [n for n, _ in COMMANDS.items()][:2] == ["build", "catalog"]  # help order is the declared order
    assert "gptq" in STEPS["quantize"] and "wanda" in STEPS["prune"] and "onnx" in STEPS["export"]
    for reg in (TARGETS, LOADERS, EXPORTERS, COMMANDS, *STEPS.values()):
        assert reg.unavailable() == {}, reg.kind
