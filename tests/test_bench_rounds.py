"""Interleaved measurement rounds: pooling math, per-round medians, ordering in the harness, run comparison."""

import statistics

import pytest
import torch

from slimserve.bench import api as bench_api
from slimserve.bench.agreement import Agreement, agreement, compare_runs
from slimserve.bench.api import bench
from slimserve.bench.record import LatencyStats
from slimserve.bench.rounds import RoundSamples, summarize
from slimserve.bench.speed import SpeedConfig, run_speed
from slimserve.bench.stats import latency_stats
from slimserve.cli import main
from slimserve.errors import UserError

from .bench_helpers import long_text, make_catalog
from .test_bench_scenarios import FakeRunner

QUICK = dict(threads=1, limit=1, iters=1, min_seconds=0, new_tokens=4, prompt_lens=[16], batches=[1, 2])


def _round(decode, load, peak, batch2=None, err=None):
    r = RoundSamples(
        load_s=load,
        ttft_s=[0.1, 0.2],
        prefill_tok_s={128: [1280.0, 640.0]},
        decode_tok_s=decode,
        itl_s=[1 / d for d in decode],
        peak_mem_mb=peak,
    )
    r.batch_tok_s[1], r.batch_itl_s[1] = r.decode_tok_s, r.itl_s
    if batch2 is not None:
        r.batch_tok_s[2], r.batch_itl_s[2] = batch2, [0.05, 0.06]
    if err is not None:
        r.batch_errors[2] = err
    return r


def test_summarize_pools_iterations_and_keeps_round_medians():
    rounds = [_round([10.0, 12.0], 1.0, 500.0, batch2=[30.0]), _round([20.0, 22.0], 3.0, 700.0, batch2=[40.0])]
    s = summarize(rounds, loop="fake", size_mb=5.0)
    assert s.rounds == 2 and s.loop == "fake" and s.size_mb == 5.0
    assert s.decode_tok_s == latency_stats([10.0, 12.0, 20.0, 22.0])
    assert s.decode_tok_s.p50 == 16.0 and s.decode_tok_s.count == 4
    # the pooled spread carries the drift between rounds, not only the jitter inside one
    assert s.decode_tok_s.stdev > statistics.stdev([10.0, 12.0])
    assert s.round_p50["decode"] == [11.0, 21.0] and s.round_p50["load_s"] == [1.0, 3.0]
    assert s.round_p50["ttft_ms"] == pytest.approx([150.0, 150.0])
    assert s.load_s == 2.0 and s.peak_mem_mb == 500.0  # the least polluted round
    assert s.batch_tok_s == {1: 16.0, 2: 35.0} and s.batch_itl_p99_ms[1] == pytest.approx(s.itl_ms.p99)
    assert s.prefill_tok_s[128].count == 4 and s.ttft_s.p50 == pytest.approx(0.15)


def test_a_batch_that_failed_in_any_round_is_not_priced():
    rounds = [_round([10.0], 1.0, 1.0, batch2=[30.0]), _round([11.0], 1.0, 1.0, err="out of memory: 2 GiB")]
    s = summarize(rounds, loop="fake")
    assert 2 not in s.batch_tok_s and s.batch_errors == {2: "out of memory: 2 GiB"}
    with pytest.raises(ValueError):
        summarize([], loop="fake")


def test_run_speed_rounds_multiply_samples_and_skip_known_failures():
    r = FakeRunner(step_s=0.002, max_batch=1)
    cfg = SpeedConfig(rounds=3, warmup=0, min_iters=2, min_seconds=0, prompt_lens=(32,), new_tokens=5, batches=(1, 2))
    s = run_speed(r, torch.arange(5000) % 16, cfg)
    assert s.rounds == 3 and s.decode_tok_s.count == 6 and len(s.round_p50["decode"]) == 3
    assert "out of memory" in s.batch_errors[2]


def test_harness_interleaves_variants_per_round(tmp_path, tiny_llama_dir, monkeypatch):
    root = make_catalog(tmp_path / "cat", tiny_llama_dir, {"tiny-noisy": 0.05})
    text = tmp_path / "eval.txt"
    text.write_text(long_text())
    order = []
    real_load = bench_api.get_target("cpu").__class__.load

    def spy(self, path, manifest, threads=None):
        order.append(manifest["name"])
        return real_load(self, path, manifest, threads)

    monkeypatch.setattr(bench_api.get_target("cpu").__class__, "load", spy)
    recs = bench(catalog=root, eval_text=text, quality=False, rounds=2, show=False, log=lambda m: None, **QUICK)
    assert order == ["tiny-fp32", "tiny-noisy", "tiny-fp32", "tiny-noisy"]
    for r in recs:
        assert r.speed.rounds == 2 and len(r.speed.round_p50["decode"]) == 2 and r.speed.decode_tok_s.count == 4
    md = next((root / "bench").glob("*.md")).read_text()
    assert "## Rounds" in md and "pooled from 2 rounds" in md


def _stats(p50, sd):
    return LatencyStats(count=3, mean=p50, stdev=sd, p50=p50, p90=p50, p99=p50, min=p50, max=p50)


def test_agreement_needs_each_median_inside_the_others_spread():
    band = dict(count=5, mean=10.0, stdev=0.5, p50=10.0, p90=12.0, p99=12.5, min=8.0, max=12.6, p10=9.0)
    a = LatencyStats(**band)
    assert Agreement("v", "decode tok/s", a, LatencyStats(**{**band, "p50": 11.5})).within  # inside 9-12 both ways
    assert not Agreement("v", "decode tok/s", a, LatencyStats(**{**band, "p50": 12.5, "p90": 14.0})).within
    assert not Agreement("v", "decode tok/s", a, LatencyStats(**{**band, "p50": 11.0, "p10": 10.5})).within
    # records without p10 (older format) fall back to median ± stdev
    assert Agreement("v", "decode tok/s", _stats(10.0, 1.0), _stats(10.9, 1.0)).within
    assert not Agreement("v", "decode tok/s", _stats(10.0, 1.0), _stats(11.5, 2.0)).within  # A's spread too narrow
    assert not Agreement("v", "decode tok/s", _stats(10.0, 2.0), _stats(11.5, 1.0)).within
    assert Agreement("v", "m", _stats(10.0, 1.0), _stats(9.0, 1.0)).delta == -1.0


def test_compare_two_stored_runs_from_the_cli(tmp_path, tiny_llama_dir, capsys):
    root = make_catalog(tmp_path / "cat", tiny_llama_dir, {"tiny-noisy": 0.05})
    text = tmp_path / "eval.txt"
    text.write_text(long_text())
    with pytest.raises(UserError, match="no stored bench runs"):
        compare_runs(catalog=root)
    a = bench(catalog=root, eval_text=text, quality=False, rounds=2, show=False, log=lambda m: None, **QUICK)
    with pytest.raises(UserError, match="two are needed"):
        compare_runs(catalog=root)
    b = bench(
        ["tiny-noisy"], catalog=root, eval_text=text, quality=False, rounds=2, show=False, log=lambda m: None, **QUICK
    )
    ra, rb, rows = compare_runs(catalog=root)
    assert (ra, rb) == (a[0].run_id, b[0].run_id)
    assert {r.variant for r in rows} == {"tiny-noisy"}  # only variants measured in both runs
    assert {r.metric for r in rows} == {"TTFT ms", "prefill@16 tok/s", "decode tok/s"}
    assert rows == agreement(a, b)

    assert main(["bench", "--list-runs", "--catalog", str(root)]) == 0
    listed = capsys.readouterr().out
    assert a[0].run_id in listed and b[0].run_id in listed
    assert main(["bench", "--compare", a[0].run_id, b[0].run_id, "--catalog", str(root)]) == 0
    out = capsys.readouterr().out
    assert "| tiny-noisy | decode tok/s |" in out and "metrics agree" in out
    assert main(["bench", "--compare", a[0].run_id, "--catalog", str(root)]) == 2
    assert main(["bench", "--compare", a[0].run_id, "nope", "--catalog", str(root)]) == 2
    assert "no stored bench run 'nope'" in capsys.readouterr().err


def _ctx(run_id, *, load="0.50 0.40 0.30", threads=2, build="b1", **speed):
    from dataclasses import replace

    from slimserve.bench.agreement import RunContext

    from .bench_helpers import fake_record

    fp = replace(fake_record("v").fingerprint, threads=threads)
    cfg = {
        "profile": speed.pop("profile", "quick"),
        "load_avg": load,
        "speed": {"rounds": 1, "new_tokens": 32, **speed},
    }
    return RunContext(run_id, "slimserve bench", cfg, fp, builds={"v": build}, loops={"v": "torch-dynamic-kv"})


def test_differences_name_what_moved_the_numbers():
    from slimserve.bench.agreement import differences

    assert differences(_ctx("a"), _ctx("b")) == []
    why = differences(
        _ctx("a"), _ctx("b", load="3.10 2.00 1.00", threads=1, build="b2", profile="full", rounds=5, new_tokens=128)
    )
    assert why[0] == "profile: A quick, B full"
    assert why[1] == "settings (A vs B): rounds 1 vs 5; new_tokens 32 vs 128"
    assert why[2].startswith("load average at start (1 min): A 0.50, B 3.10 on 2 cores (B started busy")
    assert why[3] == "threads: A 2, B 1" and why[4].startswith("variant builds differ") and "v" in why[4]
    assert differences(_ctx("a"), _ctx("b", load="0.70 0.1 0.1")) == []  # small load differences are not news


def _agree(metric, a, b):
    return Agreement("v", metric, _stats(a, 0.1), _stats(b, 0.1))


def test_drift_tells_a_host_shift_from_scatter():
    from slimserve.bench.agreement import drift, to_markdown

    together = [_agree("decode tok/s", 10, 8), _agree("TTFT ms", 100, 125), _agree("prefill@128 tok/s", 400, 330)]
    assert drift(together).startswith("Medians moved together: B is slower on 3 of 3 metrics")
    apart = [_agree("decode tok/s", 10, 12), _agree("TTFT ms", 100, 125), _agree("prefill@128 tok/s", 400, 401)]
    assert drift(apart).startswith("Medians moved apart: B is faster on 1, slower on 1 and within 2% on 1 of 3")
    assert drift([_agree("decode tok/s", 10, 10.1)]).startswith("Every median moved less than 2%")
    md = to_markdown(together, "A1", "B1", ["threads: A 2, B 1"])
    tail = md.split("0 of 3 metrics agree.")[1]
    assert (
        "What differed between the runs:\n- threads: A 2, B 1" in tail
        and "what differed above (or host drift) moves" in tail
    )
    assert "that is host drift" in drift(together)
    assert "Same profile, settings" in to_markdown(together, "A1", "B1", [])


def test_compare_cli_says_why_runs_differ(tmp_path, tiny_llama_dir, capsys):
    root = make_catalog(tmp_path / "cat", tiny_llama_dir)
    text = tmp_path / "eval.txt"
    text.write_text(long_text())
    kw = dict(catalog=root, eval_text=text, quality=False, show=False, log=lambda m: None, **QUICK)
    a = bench(rounds=1, **kw)[0].run_id
    b = bench(rounds=2, profile="full", **kw)[0].run_id  # ids given: both runs may start within one second
    assert main(["bench", "--compare", a, b, "--catalog", str(root)]) == 0
    out = capsys.readouterr().out
    assert "What differed between the runs:" in out and "- profile: A quick, B full" in out
    assert "rounds 1 vs 2" in out and "warmup" not in out  # only the settings that differ
