"""The llamacpp-cpu target: a GGUF written by the export step runs in llama.cpp unchanged, in the bench harness."""

import json

import pytest
import torch

import slimserve
from slimserve.bench.api import bench
from slimserve.bench.metrics import kl_divergence
from slimserve.bench.targets import get_target, target_names

from .bench_helpers import long_text
from .helpers import write_recipe

WHY = get_target("llamacpp-cpu").available()
needs_llama = pytest.mark.skipif(WHY is not None, reason=f"llama.cpp is not usable here: {WHY}")
VARIANTS = """  - name: ref
    tier: reference
    reference: true
  - name: g-f32
    tier: t
    steps: [{export: {format: gguf, type: F32}}]
  - name: g-q4
    tier: t
    steps: [{export: {format: gguf, type: Q4_0}}]
"""


def test_target_registered_and_explains_formats():
    assert "llamacpp-cpu" in target_names()
    tgt = get_target("llamacpp-cpu")
    assert "not 'gguf'" in tgt.supports({"format": "onnx"})
    assert tgt.supports({"format": "gguf"}) is None


@pytest.fixture(scope="module")
def cat(tmp_path_factory, tiny_llama_dir):
    d = tmp_path_factory.mktemp("llamacpp")
    slimserve.build(write_recipe(d / "r.yaml", tiny_llama_dir, VARIANTS), catalog=d / "cat")
    (d / "eval.txt").write_text(long_text())
    return d


@needs_llama
def test_llama_cpp_logits_and_greedy_match_pytorch(cat, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    ids = torch.randint(3, 300, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ref(ids).logits
        greedy = ref.generate(ids[:, :12], attention_mask=torch.ones(2, 12), max_new_tokens=6, do_sample=False)
    for name, max_kld in (("g-f32", 1e-6), ("g-q4", 5e-3)):
        path = cat / "cat" / name
        runner = get_target("llamacpp-cpu").load(path, json.loads((path / "manifest.json").read_text()), threads=1)
        try:
            got = runner.logits(ids)
            assert got.shape == want.shape and runner.vocab_size == want.shape[-1]
            assert float(kl_divergence(want.flatten(0, 1), got.flatten(0, 1)).mean()) <= max_kld
            if name == "g-f32":
                torch.testing.assert_close(got, want, atol=2e-3, rtol=1e-3)
                g = runner.generate(ids[:, :12], 6)  # a batch of 2 decoded together
                assert torch.equal(g.tokens, greedy[:, 12:]) and len(g.step_s) == 5 and g.ttft_s > 0
        finally:
            runner.close()


@needs_llama
def test_bench_gives_the_same_records_as_other_targets(cat):
    quick = dict(threads=1, limit=1, rounds=1, iters=1, min_seconds=0, new_tokens=4, prompt_lens=[16], batches=[1, 2])
    recs = bench(target="auto", catalog=cat / "cat", eval_text=cat / "eval.txt", out=cat / "rep", show=False, **quick)
    by = {(r.variant, r.target): r for r in recs}
    assert set(by) == {("ref", "cpu"), ("g-f32", "llamacpp-cpu"), ("g-q4", "llamacpp-cpu")}
    for r in by.values():
        assert r.speed.decode_tok_s.p50 > 0 and set(r.speed.batch_tok_s) == {1, 2} and r.cost.usd_per_1m_output > 0
        assert r.quality.ref_ppl == by[("ref", "cpu")].quality.ppl
    assert by[("g-f32", "llamacpp-cpu")].quality.kld < 1e-5 < by[("g-q4", "llamacpp-cpu")].quality.kld
    assert by[("g-q4", "llamacpp-cpu")].speed.loop == "llama.cpp-c-api-batch-decode"
    combined = next((cat / "rep").glob("combined-*.md")).read_text()
    title = combined.splitlines()[0]
    assert "llamacpp-cpu + cpu" in title or "cpu + llamacpp-cpu" in title
    assert "| g-q4@llamacpp-cpu |" in combined and "| ref@cpu |" in combined
