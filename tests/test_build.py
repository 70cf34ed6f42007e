"""Build on a tiny random Llama: artifacts, manifests, packed storage, plain-transformers reload."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open

import slimserve
from slimserve.catalog import Catalog
from slimserve.recipe import load_recipe

from .helpers import REPO, write_recipe

VARIANTS = """\
  - {name: ref, tier: reference, reference: true}
  - name: w8
    tier: small
    steps: [{quantize: {method: rtn, bits: 8, group_size: null, symmetric: true}}]
  - name: w4
    tier: nano
    steps: [{quantize: {method: rtn, bits: 4, group_size: 32, symmetric: false, overrides: {'.*down_proj': skip}}}]
"""


@pytest.fixture(scope="module")
def built(tiny_llama_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("build")
    recipe = write_recipe(tmp / "r.yaml", tiny_llama_dir, VARIANTS)
    rows = slimserve.build(recipe, catalog=tmp / "cat")
    return {r.name: r for r in rows}, tmp / "cat"


def test_catalog_holds_every_variant(built):
    rows, cat = built
    assert set(rows) == {"ref", "w8", "w4"}
    assert [v.name for v in Catalog.open(cat).variants()] == ["ref", "w4", "w8"]
    assert not any((cat / ".staging").iterdir())


def test_manifest_describes_the_artifact(built):
    rows, _ = built
    m = rows["w4"].manifest
    assert m["format"] == "compressed-tensors" and m["tier"] == "nano"
    assert m["steps"][0]["settings"]["group_size"] == 32 and m["steps"][0]["kind"] == "quantize"
    assert set(m["skipped_layers"]) == {"lm_head", "model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"}
    assert m["skipped_layers"]["lm_head"].startswith("in ignore list")
    for rel, f in m["files"].items():
        assert (rows["w4"].path / rel).stat().st_size == f["bytes"] and len(f["sha256"]) == 64
    assert m["recipe"]["name"] == "test" and len(m["recipe"]["hash"]) == 64
    assert len(m["base"]["source_hash"]) == 64 and m["versions"]["torch"].startswith("2.")
    assert m["params"] == rows["ref"].manifest["params"]
    assert m["bits_per_weight"] < rows["ref"].manifest["bits_per_weight"]
    assert rows["w8"].manifest["bits_per_weight"] < rows["ref"].manifest["bits_per_weight"]
    assert rows["ref"].manifest["bits_per_weight"] == pytest.approx(32, rel=0.01)


def test_int4_is_really_packed(built):
    rows, _ = built
    path = rows["w4"].path / "model.safetensors"
    with safe_open(path, "pt") as f:
        keys = set(f.keys())
        packed = f.get_tensor("model.layers.0.self_attn.q_proj.weight_packed")
        shape = f.get_tensor("model.layers.0.self_attn.q_proj.weight_shape").tolist()
    assert "model.layers.0.self_attn.q_proj.weight" not in keys
    assert packed.dtype == torch.int32 and packed.shape[1] * 8 == shape[1]  # eight int4 per int32
    assert "model.layers.0.mlp.down_proj.weight" in keys  # skipped by override: stays dense


def test_reloads_with_plain_transformers_without_slimserve(built, tiny_llama_dir):
    """A fresh process that never imports slimserve loads the variant and matches its own quantization."""
    rows, _ = built
    code = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import AutoModelForCausalLM
        ref = AutoModelForCausalLM.from_pretrained({str(tiny_llama_dir)!r}).eval()
        q = AutoModelForCausalLM.from_pretrained({str(rows["w4"].path)!r}).eval()
        ids = torch.arange(1, 40).unsqueeze(0)
        a, b = ref(ids).logits, q(ids).logits
        rel = ((a - b).norm() / a.norm()).item()
        print(rel, "slimserve" in sys.modules, type(q.model.layers[0].self_attn.q_proj).__name__)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True
    ).stdout.split()
    rel, imported = float(out[0]), out[1]
    assert imported == "False"
    assert 0 < rel < 0.2  # quantized, so not identical, but close


def test_loaded_weights_are_exactly_the_quantized_grid(built, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    from slimserve.quant.math import compute_qparams, fake_quantize

    rows, _ = built
    ref = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model, tok = slimserve.load(rows["w4"].path)
    w0 = ref.model.layers[1].self_attn.k_proj.weight
    expected = fake_quantize(w0, compute_qparams(w0, 4, 32, symmetric=False))
    got = model.model.layers[1].self_attn.k_proj.weight
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    ids = tok("It is a truth", return_tensors="pt").input_ids
    assert model.generate(ids, max_new_tokens=5, do_sample=False).shape[1] == ids.shape[1] + 5


def test_loaded_layers_run_plain_forward_with_the_same_logits(built):
    """slimserve.load drops compressed-tensors' per-call QDQ wrapper once weights are dense; outputs are unchanged."""
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    rows, _ = built
    model, _ = slimserve.load(rows["w4"].path)
    wrapped = AutoModelForCausalLM.from_pretrained(
        rows["w4"].path, dtype=torch.float32, quantization_config=CompressedTensorsConfig(run_compressed=False)
    ).eval()
    q, wq = model.model.layers[0].self_attn.q_proj, wrapped.model.layers[0].self_attn.q_proj
    assert "forward" in vars(wq) and "forward" not in vars(q)
    assert getattr(q, "quantization_scheme", None) is not None  # still described as quantized
    ids = torch.arange(1, 40).unsqueeze(0)
    with torch.inference_mode():
        torch.testing.assert_close(model(ids).logits, wrapped(ids).logits, rtol=0, atol=0)


def test_int4_smaller_than_int8_smaller_than_ref(built):
    rows, _ = built
    sizes = {n: r.size_bytes for n, r in rows.items()}
    assert sizes["w4"] < sizes["ref"] and sizes["w8"] < sizes["ref"]


def test_overrides_and_indivisible_groups(tiny_llama_dir, tmp_path):
    """hidden 64 with group 128: the smaller-group fallback is used and recorded per layer."""
    recipe = write_recipe(
        tmp_path / "r.yaml",
        tiny_llama_dir,
        "  - name: g128\n    tier: nano\n    steps: [{quantize: {method: rtn, bits: 4, group_size: 128, overrides: {'.*up_proj': {group_size: 32}}}}]\n",
    )
    (row,) = slimserve.build(recipe, catalog=tmp_path / "cat")
    layers = row.manifest["quantized_layers"]
    assert layers["model.layers.0.self_attn.q_proj"]["group_size"] == 64  # 64 % 128 != 0 -> fallback
    assert layers["model.layers.0.mlp.down_proj"]["group_size"] == 128  # in_features 128 divides
    assert layers["model.layers.0.mlp.up_proj"]["group_size"] == 32  # per-layer override
    notes = row.manifest["steps"][0]["records"]["notes"]
    assert any("not divisible by group size 128: used group 64" in k for k in notes)


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_builds_on_a_tiny_model(path, tiny_llama_dir, tmp_path):
    r = load_recipe(path)
    rows = slimserve.build(path, catalog=tmp_path / "cat", base=str(tiny_llama_dir))
    assert [row.name for row in rows] == [v.name for v in r.variants]
    for row in rows:
        assert (row.path / "manifest.json").is_file() and row.size_bytes > 0
        assert json.loads((row.path / "manifest.json").read_text())["recipe"]["file"] == str(path)
