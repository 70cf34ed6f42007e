"""End to end on a tiny catalog: records stored and printed; bad input fails early, clearly, and stores nothing."""

import json

import pytest
import torch

from slimserve.bench import phases as bench_phases
from slimserve.bench.api import bench
from slimserve.bench.store import history, latest_records, summary_columns
from slimserve.bench.targets import TARGETS, get_target, target_status
from slimserve.catalog import Catalog
from slimserve.cli import main
from slimserve.errors import UserError

from .bench_helpers import long_text, make_catalog

QUICK = dict(
    threads=1, limit=1, rounds=1, iters=1, min_seconds=0, new_tokens=4, prompt_lens=[16], batches=[1, 2], json=True
)


@pytest.fixture(scope="module")
def tiny_catalog(tmp_path_factory, tiny_llama_dir):
    root = tmp_path_factory.mktemp("bench") / "cat"
    make_catalog(root, tiny_llama_dir, {"tiny-noisy": 0.05})
    text = root.parent / "eval.txt"
    text.write_text(long_text())
    return root, text


@pytest.fixture()
def fresh_catalog(tmp_path, tiny_llama_dir):
    root = make_catalog(tmp_path / "cat", tiny_llama_dir, {"tiny-noisy": 0.05})
    text = tmp_path / "eval.txt"
    text.write_text(long_text())
    return root, text


def test_bench_stores_and_reports_every_variant(tiny_catalog, capsys):
    root, text = tiny_catalog
    recs = bench(catalog=root, eval_text=text, eval_mc=None, out=root.parent / "reports", **QUICK)
    out = json.loads(capsys.readouterr().out)
    assert [r["variant"] for r in out] == ["tiny-fp32", "tiny-noisy"]
    by = {r.variant: r for r in recs}
    ref, noisy = by["tiny-fp32"], by["tiny-noisy"]
    for r in recs:
        s = r.speed
        assert s.loop == "torch-dynamic-kv" and s.ttft_s.p50 > 0 and s.prefill_tok_s[16].p50 > 0
        assert s.decode_tok_s.p50 > 0 and s.itl_ms.p99 >= s.itl_ms.p50 > 0 and s.peak_mem_mb > 0 and s.size_mb > 0
        assert set(s.batch_tok_s) == {1, 2}
        assert r.cost.usd_per_1m_output > 0 and r.cost.slo_ms == 100.0 and r.cost.price_per_hour > 0
        assert r.fingerprint.threads >= 1 and r.fingerprint.versions["torch"].startswith("2.")
    assert ref.quality.kld == 0.0 and ref.quality.top1 == 1.0
    assert noisy.quality.kld > 0 and noisy.quality.ref_ppl == ref.quality.ppl
    assert noisy.quality.ppl_delta == pytest.approx(noisy.quality.ppl / ref.quality.ppl - 1)
    cat = Catalog.open(root)
    stored = {r.variant: r for r in latest_records(cat)}
    assert stored["tiny-noisy"] == noisy
    cols = summary_columns(cat)
    assert cols["tiny-noisy"]["kld"] == round(noisy.quality.kld, 5)
    reports = sorted((root.parent / "reports").iterdir())
    assert [p.suffix for p in reports] == [".json", ".md"]
    md = reports[1].read_text()
    assert "torch-dynamic-kv" in md and "$/1M output" in md and "tiny-noisy" in md


def test_one_variant_no_quality(tiny_catalog):
    root, text = tiny_catalog
    (rec,) = bench(["tiny-noisy"], catalog=root, eval_text=text, quality=False, **QUICK)
    assert rec.quality is None and rec.speed is not None and rec.cost is not None


def test_mc_from_jsonl(tiny_catalog, tmp_path):
    root, text = tiny_catalog
    mc = tmp_path / "qa.jsonl"
    mc.write_text(
        "\n".join(json.dumps({"question": f"q{i}", "choices": ["a", "b c"], "answer": i % 2}) for i in range(3))
    )
    (rec,) = bench(["tiny-fp32"], catalog=root, eval_text=text, eval_mc=mc, speed=False, **QUICK)
    assert rec.quality.mc_counts == {"qa": 1} and 0.0 <= rec.quality.mc_accuracy["qa"] <= 1.0
    assert rec.cost is None and rec.speed is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(target="tpu"), "unknown target 'tpu'"),
        (dict(variants=["nope"]), "no variant 'nope'"),
        (dict(eval_text="/does/not/exist.txt"), "does not exist"),
        (dict(price_per_hour=-1.0), "positive"),
        (dict(hardware="my-box"), "no price for hardware"),
        (dict(limit=0), "limit: must be at least 1, got 0"),
        (dict(loop="fastest"), "unknown decode loop"),
        (dict(rounds=0), "rounds: input should be greater than or equal to 1"),
        (dict(iters=0), "iters: "),
    ],
)
def test_bad_input_fails_before_measuring_and_stores_nothing(fresh_catalog, kwargs, match, monkeypatch):
    root, text = fresh_catalog
    monkeypatch.setattr(bench_phases, "run_round", lambda *a, **k: pytest.fail("measured despite bad input"))
    kw = {**QUICK, "eval_text": text, **kwargs}
    variants = kw.pop("variants", None)
    with pytest.raises(UserError, match=match):
        bench(variants, catalog=root, **kw)
    assert history(Catalog.open(root)) == []


def test_too_short_eval_text(fresh_catalog, tmp_path, monkeypatch):
    root, _ = fresh_catalog
    short = tmp_path / "short.txt"
    short.write_text("Too short for one window.")
    monkeypatch.setattr(bench_phases, "run_round", lambda *a, **k: pytest.fail("measured despite bad input"))
    with pytest.raises(UserError, match="short.txt"):
        bench(catalog=root, eval_text=short, **QUICK)
    assert history(Catalog.open(root)) == []


def test_unavailable_target_says_why(fresh_catalog):
    root, text = fresh_catalog
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present, so the cuda target is available")
    assert get_target("cuda").available().startswith("cuda: ")
    assert target_status()["cuda"].startswith("cuda: ")
    with pytest.raises(UserError, match="cuda: "):
        bench(catalog=root, eval_text=text, target="cuda", **QUICK)


def test_unsupported_artifact_is_an_error_when_named(fresh_catalog):
    root, text = fresh_catalog
    m = json.loads((root / "tiny-noisy" / "manifest.json").read_text())
    m["format"] = "onnx"
    (root / "tiny-noisy" / "manifest.json").write_text(json.dumps(m))
    (root / "index.sqlite").unlink(missing_ok=True)  # re-index from the folders
    with pytest.raises(UserError, match="not a PyTorch checkpoint"):
        bench(["tiny-noisy"], target="cpu", catalog=root, eval_text=text, **QUICK)


def test_ctrl_c_stores_nothing(fresh_catalog, monkeypatch):
    root, text = fresh_catalog
    real = bench_phases.run_round
    calls = []

    def interrupt_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(bench_phases, "run_round", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        bench(catalog=root, eval_text=text, **QUICK)
    assert history(Catalog.open(root)) == [] and not (root / "bench").exists()


def test_cli_exit_codes(fresh_catalog, capsys):
    root, text = fresh_catalog
    assert main(["bench", "--catalog", str(root), "--target", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown target 'nope'" in err and "cpu" in err
    assert main(["bench", "nope", "--catalog", str(root), "--eval-text", str(text)]) == 2
    assert main(["bench", "--list-targets"]) == 0
    assert "cpu" in capsys.readouterr().out
    assert "cpu" in TARGETS


def _set_manifest(path, **fields):
    m = json.loads((path / "manifest.json").read_text())
    m.update(fields)
    (path / "manifest.json").write_text(json.dumps(m))


def test_bench_enforces_gates_and_sets_the_catalog_status(tmp_path, tiny_llama_dir):
    root = make_catalog(tmp_path / "cat", tiny_llama_dir, {"tiny-close": 0.001, "tiny-far": 0.2})
    _set_manifest(root / "tiny-close", gates={"max_kld": 0.05, "min_top1": 0.5, "check": "bench"})
    _set_manifest(root / "tiny-far", gates={"max_kld": 0.05, "check": "bench"})
    text = tmp_path / "eval.txt"
    text.write_text(long_text())
    recs = {r.variant: r for r in bench(catalog=root, eval_text=text, speed=False, **QUICK)}
    assert recs["tiny-close"].gate["status"] == "passed" and recs["tiny-fp32"].gate["status"] == "reference"
    far = recs["tiny-far"].gate
    assert far["status"] == "rejected" and far["checks"][0]["value"] > 0.05 and far["target"] == "cpu"
    assert far["run_id"] == recs["tiny-far"].run_id and "FAILS" in far["reason"]
    cat = Catalog.open(root)
    assert {v.name: v.status for v in cat.variants()} == {"tiny-close": "passed", "tiny-far": "rejected",
                                                            "tiny-fp32": "reference"}  # fmt: skip
    stored = {r.variant: r for r in latest_records(cat)}
    assert stored["tiny-far"].gate == far  # the verdict is kept with the record


def test_bench_refuses_to_score_on_calibration_windows(fresh_catalog):
    import hashlib

    root, text = fresh_catalog
    sha = hashlib.sha256(text.read_text(encoding="utf-8").encode("utf-8")).hexdigest()
    calib = {"calibration": {"text": str(text), "token_range": [0, 10**7], "text_sha256": sha}}
    _set_manifest(root / "tiny-noisy", steps=[{"kind": "quantize", "method": "gptq", "records": calib}])
    with pytest.raises(UserError, match="tiny-noisy' would be scored on text it was calibrated on"):
        bench(catalog=root, eval_text=text, **QUICK)
    assert not latest_records(Catalog.open(root))


def test_auto_target_runs_each_variant_where_its_artifact_runs(tmp_path, tiny_llama_dir):
    pytest.importorskip("onnxruntime")
    from transformers import AutoModelForCausalLM

    from slimserve.onnx.export import export_fused
    from slimserve.onnx.quantize import WeightPlan
    from slimserve.onnx.steps import OnnxExportConfig

    from .bench_helpers import write_manifest

    root = make_catalog(tmp_path / "cat", tiny_llama_dir)
    out = root / "tiny-onnx8"
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    export_fused(model, out, WeightPlan(OnnxExportConfig(weights="int8", block_size=32)))
    for f in tiny_llama_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            (out / f.name).write_bytes(f.read_bytes())
    write_manifest(out, "tiny-onnx8", reference=False, fmt="onnx")
    _set_manifest(out, steps=[{"kind": "export", "settings": {"graph": "fused"}, "records": {"model_file": "model.onnx"}}],
                  gates={"max_kld": 0.01})  # fmt: skip
    text = tmp_path / "eval.txt"
    text.write_text(long_text())
    recs = bench(catalog=root, eval_text=text, **QUICK)
    assert {(r.variant, r.target) for r in recs} == {("tiny-fp32", "cpu"), ("tiny-onnx8", "onnx-cpu")}
    onnx = next(r for r in recs if r.target == "onnx-cpu")
    # scored against the PyTorch reference on the same windows: int8 weights stay close
    assert onnx.quality.kld < 0.01 and onnx.gate["status"] == "passed" and onnx.speed.decode_tok_s.p50 > 0
    assert any("against tiny-fp32 run on 'cpu'" in n for n in onnx.notes), onnx.notes


def test_a_catalog_with_two_bases_scores_each_variant_against_its_own_reference(tmp_path, tiny_llama_dir):
    from slimserve.testing import make_tiny_llama

    from .bench_helpers import write_manifest

    root = make_catalog(tmp_path / "cat", tiny_llama_dir, {"tiny-noisy": 0.05})
    other = make_tiny_llama(root / "other-fp32", seed=7, vocab_size=352)  # another model, another vocabulary width
    m = write_manifest(other, "other-fp32", reference=True)
    m["base"] = {"source": "other", "source_hash": "1", "config": {}}
    (other / "manifest.json").write_text(json.dumps(m))
    text = tmp_path / "eval.txt"
    text.write_text(long_text())
    recs = {r.variant: r for r in bench(catalog=root, eval_text=text, eval_mc=None, show=False, **QUICK)}
    assert set(recs) == {"tiny-fp32", "tiny-noisy", "other-fp32"}
    assert recs["other-fp32"].quality.kld == 0.0 and recs["other-fp32"].quality.top1 == 1.0  # its own reference
    assert recs["tiny-noisy"].quality.kld > 0 and recs["tiny-noisy"].quality.ref_ppl == recs["tiny-fp32"].quality.ppl
    assert recs["other-fp32"].run_id != recs["tiny-noisy"].run_id  # one run per base
