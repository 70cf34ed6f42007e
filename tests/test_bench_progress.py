"""Bench profiles (quick default, full = the old rigour) and the whole-run progress display with its ETA."""

import json

import pytest
import torch

from slimserve.bench import api as bench_api
from slimserve.bench import phases as bench_phases
from slimserve.bench.api import _busy_note, bench
from slimserve.bench.profiles import DEFAULT_PROFILE, PROFILES, get_profile, profile_line
from slimserve.bench.progress import BenchProgress, Step, Tracker, fmt_s, plan, quality_hint_s
from slimserve.bench.quality import QualityConfig
from slimserve.bench.speed import SpeedConfig, measure_round, scenarios
from slimserve.cli import main
from slimserve.errors import UserError

from .bench_helpers import long_text, make_catalog
from .test_bench_scenarios import FakeRunner

TINY = dict(threads=1, limit=1, iters=1, min_seconds=0, new_tokens=4, prompt_lens=[16], batches=[1, 2])


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


# --- profiles --------------------------------------------------------------------------------------------------------


def test_full_is_the_old_rigour_and_quick_keeps_what_prices_need():
    full = SpeedConfig(**PROFILES["full"].speed)
    assert full == SpeedConfig()  # today's defaults, unchanged
    assert (full.rounds, full.new_tokens, full.batches, full.prompt_lens) == (5, 128, (1, 4, 16), (128, 512))
    quick = SpeedConfig(**PROFILES["quick"].speed)
    assert DEFAULT_PROFILE == "quick" and quick.rounds < full.rounds and quick.new_tokens < full.new_tokens
    assert max(quick.batches) > 1 and 1 in quick.batches  # the output price needs batch 1 and a batch that pays
    for p in PROFILES.values():
        q = QualityConfig(**p.quality)
        assert q.windows >= 16 and q.ctx >= 512  # KLD/top-1 feed quality gates
    assert QualityConfig(**PROFILES["quick"].quality).mc_limit < QualityConfig(**PROFILES["full"].quality).mc_limit
    with pytest.raises(UserError, match="unknown bench profile 'fast'") as e:
        get_profile("fast")
    assert "quick, full" in str(e.value) and "profile" in str(e.value)


def test_profile_line_names_profile_settings_and_overrides():
    config = {
        "profile": "quick",
        "profile_overrides": ["rounds=3"],
        "speed": SpeedConfig(**{**PROFILES["quick"].speed, "rounds": 3}).model_dump(),
        "quality": QualityConfig(**PROFILES["quick"].quality).model_dump(),
    }
    line = profile_line(config)
    assert line.startswith("- profile: **quick**") and "--full" in line and "3 round(s)" in line
    assert "batches 1,8" in line and "16 perplexity windows of 512" in line and "overridden: rounds=3" in line
    assert profile_line({"speed": {}}) is None  # runs stored before profiles


# --- planning and ETA ------------------------------------------------------------------------------------------------


def test_plan_counts_rounds_variants_scenarios_and_quality_passes():
    cfg = SpeedConfig(rounds=2, prompt_lens=(16, 32), batches=(1, 4))
    assert scenarios(cfg) == ["prefill@16", "prefill@32", "decode", "batch 4"]
    steps = plan(["a", "b"], cfg.rounds, scenarios(cfg), ["a", "b"])
    assert [(s.phase, s.variant) for s in steps] == [("speed", "a"), ("speed", "b")] * 2 + [
        ("quality", "a"),
        ("quality", "b"),
    ]
    assert Tracker(steps).total_units == 2 * 2 * (1 + 4) + 2


def test_eta_comes_from_measured_steps():
    clock = Clock()
    t = Tracker(plan(["a", "b"], 2, ["prefill", "decode"], ["a", "b"]), clock=clock)  # 3 units per speed step
    assert t.eta_s() is None
    t.start_next()
    clock.t = 2.0
    t.tick()  # first unit of the first step took 2 s: extrapolate the step, nothing else is known yet
    assert t.eta_s() is None and t.eta_text() == ">0:22"  # the speed steps alone: a lower bound
    t.hints["quality"] = 5.0
    assert t.eta_s() == pytest.approx(4.0 + 3 * 6.0 + 2 * 5.0)  # the rest of a, b and round 2 like a, 2 hinted passes
    clock.t = 6.0
    t.start_next()  # a took 6 s
    clock.t = 16.0
    t.start_next()  # b took 10 s
    assert t.estimate_s(Step("speed", "a")) == 6.0 and t.estimate_s(Step("speed", "b")) == 10.0
    assert t.eta_s() == pytest.approx(6.0 + 10.0 + 2 * 5.0)
    clock.t = 30.0  # a is running late: its part of the ETA is spent, not negative
    assert t.eta_s() == pytest.approx(0.0 + 10.0 + 2 * 5.0)
    t.start_next()
    clock.t = 40.0
    t.start_next()  # first quality pass starts: measured passes replace the hint once one is done
    clock.t = 47.0
    t.start_next()
    assert t.eta_s() == pytest.approx(7.0)
    assert t.done_units == 4 * 3 + 1 and "13/14" in t.status() and "eta 0:07" in t.status()
    t.finish()
    assert t.eta_s() == 0.0 and t.done_units == t.total_units
    assert fmt_s(None) == "?" and fmt_s(61.4) == "1:01" and fmt_s(3725) == "1:02:05"
    assert quality_hint_s(500.0, 10_000) == 20.0


def test_plain_progress_lines_carry_the_eta():
    clock, lines = Clock(), []
    p = BenchProgress(plan(["a", "b"], 1, ["decode"], []), log=lines.append, quality_tokens=0, clock=clock)
    with p:
        p.step("[round 1/1] [1/2] a: speed")
        clock.t = 4.0
        p.tick()
        p.tick()
        p.step("[round 1/1] [2/2] b: speed")
        p.log("  decode: 1 tok/s")
        clock.t = 8.0
        p.finish()
    assert lines[0].startswith("[round 1/1] [1/2] a: speed  (0/4, 0:00 elapsed, eta ?)")
    assert lines[1] == "[round 1/1] [2/2] b: speed  (2/4, 0:04 elapsed, eta 0:04)"
    assert lines[2] == "  decode: 1 tok/s" and lines[3] == "measured in 0:08"


def test_live_progress_prints_messages_without_markup(capsys):
    p = BenchProgress(plan(["a"], 1, ["decode"], ["a"]), log=pytest.fail, live=True, quality_tokens=100)
    with p:
        p.step("[round 1/1] [1/1] a: speed")
        p.tick("load")
        p.prefill_speed(50.0)
        assert p.tracker.hints["quality"] == 2.0
        p.step("quality: a")
        p.finish()
    err = capsys.readouterr().err
    assert "[round 1/1] [1/1] a: speed" in err and "quality: a" in err and "measured in" in err


def test_measure_round_ticks_every_scenario_in_order():
    cfg = SpeedConfig(warmup=0, min_seconds=0, prompt_lens=(16, 32), new_tokens=3, batches=(1, 2, 8))
    seen = []
    rs = measure_round(FakeRunner(max_batch=4), torch.arange(4000) % 16, cfg, tick=seen.append)
    assert seen == scenarios(cfg) and 8 in rs.batch_errors  # a batch that did not fit still counts as done
    seen.clear()
    measure_round(FakeRunner(), torch.arange(4000) % 16, cfg, skip_batches={8: "oom"}, tick=seen.append)
    assert seen == scenarios(cfg)


def test_busy_note():
    assert _busy_note("0.50 0.40 0.30", 2) is None and _busy_note(None, 2) is None
    assert "load average 9.6 on 2 cores" in _busy_note("9.60 8.00 5.00", 2)


# --- through bench() and the CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cat(tmp_path_factory, tiny_llama_dir):
    root = tmp_path_factory.mktemp("prog") / "cat"
    make_catalog(root, tiny_llama_dir, {"tiny-noisy": 0.05})
    text = root.parent / "eval.txt"
    text.write_text(long_text())
    return root, text


def test_bench_records_profile_and_logs_progress(cat, capsys):
    root, text = cat
    lines = []
    recs = bench(catalog=root, eval_text=text, rounds=2, show=False, log=lines.append, **TINY)
    assert capsys.readouterr().err == ""  # a custom log gets everything
    steps = [m for m in lines if m.startswith(("[round", "quality:"))]
    assert len(steps) == 2 * 2 + 2 and all("elapsed, eta" in m for m in steps)
    assert "eta ?" not in steps[-1] and lines[-2].startswith("measured in")
    # units: 2 rounds x 2 variants x (load, prefill@16, decode, batch 2) + 2 quality passes
    assert "/18," in steps[0] and any("bench run" in m and "profile quick" in m for m in lines)
    report = json.loads(next((root / "bench").glob(f"{recs[0].run_id}.json")).read_text())
    cfg = report["config"]
    assert cfg["profile"] == "quick" and cfg["speed"]["rounds"] == 2 and cfg["speed"]["batch_new_tokens"] == 16
    assert "rounds=2" in cfg["profile_overrides"] and "limit=1" in cfg["profile_overrides"]
    md = next((root / "bench").glob(f"{recs[0].run_id}.md")).read_text()
    assert "- profile: **quick**" in md and "overridden: " in md

    bench(["tiny-noisy"], catalog=root, eval_text=text, quality=False, json=True, show=False, **TINY)
    assert capsys.readouterr().err == ""  # json=True stays silent


def test_full_profile_from_the_cli(cat, monkeypatch):
    root, text = cat
    seen = {}
    monkeypatch.setattr(bench_api, "bench", lambda *a, config, **k: seen.update(config.model_dump()))
    assert main(["bench", "--catalog", str(root), "--full"]) == 0 and seen["profile"] == "full"
    assert main(["bench", "--catalog", str(root)]) == 0 and seen["profile"] == "quick"
    assert main(["bench", "--catalog", str(root), "--profile", "full", "--rounds", "2"]) == 0
    assert seen["profile"] == "full" and seen["rounds"] == 2
    with pytest.raises(SystemExit):
        main(["bench", "--catalog", str(root), "--profile", "full", "--full"])


def test_unknown_profile_fails_before_measuring(cat, monkeypatch):
    root, text = cat
    monkeypatch.setattr(bench_phases, "run_round", lambda *a, **k: pytest.fail("measured despite bad input"))
    with pytest.raises(UserError, match="unknown bench profile"):
        bench(catalog=root, eval_text=text, profile="slow", show=False, log=lambda m: None, **TINY)
