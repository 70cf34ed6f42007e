"""BenchConfig: every `slimserve bench` flag is checked before any work (exit 2 naming the flag), and the CLI's
options are the config's fields."""

import pytest
import torch

from slimserve.bench import phases
from slimserve.bench.api import bench
from slimserve.bench.config import BenchConfig
from slimserve.bench.store import history
from slimserve.catalog import Catalog
from slimserve.cli import main, make_parser
from slimserve.errors import UserError

from .bench_helpers import long_text, make_catalog


@pytest.fixture(scope="module")
def cat(tmp_path_factory, tiny_llama_dir):
    root = make_catalog(tmp_path_factory.mktemp("cfg") / "cat", tiny_llama_dir, {"tiny-noisy": 0.05})
    text = root.parent / "eval.txt"
    text.write_text(long_text())
    return root, text


@pytest.fixture()
def no_measuring(monkeypatch):
    monkeypatch.setattr(phases, "run_round", lambda *a, **k: pytest.fail("measured despite bad input"))
    monkeypatch.setattr(phases, "run_perplexity", lambda *a, **k: pytest.fail("scored despite bad input"))


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--threads", "-1"], "--threads: must be at least 1, got -1"),
        (["--threads", "0"], "--threads: must be at least 1, got 0"),
        (["--slo-ms", "-5"], "--slo-ms: must be a positive number, got -5"),
        (["--slo-ms", "nan"], "--slo-ms: must be a positive number, got nan"),
        (["--price-per-hour", "0"], "--price-per-hour: must be a positive number"),
        (["--batches", "0,4"], "--batches: expected positive integers"),
        (["--limit", "0"], "--limit: must be at least 1"),
        (["--new-tokens", "1"], "--new-tokens: input should be greater than or equal to 2"),
        (["--profile", "slow"], "--profile: unknown bench profile 'slow'"),
        (["--no-speed", "--no-quality"], "nothing to do"),
    ],
)
def test_bad_flag_exits_2_naming_it_before_any_work(cat, flags, expected, capsys, no_measuring):
    root, text = cat
    assert main(["bench", "--catalog", str(root), "--eval-text", str(text), *flags]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert history(Catalog.open(root)) == []


def test_out_that_is_a_file_fails_before_measuring(cat, tmp_path, capsys, no_measuring):
    root, text = cat
    f = tmp_path / "report.md"
    f.write_text("x")
    assert main(["bench", "--catalog", str(root), "--eval-text", str(text), "--out", str(f)]) == 2
    assert "--out: " in capsys.readouterr().err and f.read_text() == "x"


def test_api_names_the_keyword_and_lists_the_settings(cat, no_measuring):
    root, text = cat
    with pytest.raises(UserError, match=r"^threads: must be at least 1, got 0$"):
        bench(catalog=root, eval_text=text, threads=0)
    with pytest.raises(UserError, match="unknown setting 'thread'") as e:
        bench(catalog=root, thread=1)
    assert "threads" in str(e.value) and "slo_ms" in str(e.value)


def test_every_target_is_checked_before_the_first_one_measures(cat, no_measuring):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present, so the cuda target is available")
    root, text = cat
    with pytest.raises(UserError, match="cuda: "):
        bench(catalog=root, eval_text=text, target="cpu,cuda", show=False)
    assert history(Catalog.open(root)) == []


def test_cli_options_are_the_config_fields():
    sub = next(a for a in make_parser()._actions if a.dest == "command")
    dests = {a.dest for a in sub.choices["bench"]._actions}
    assert {f.alias or n for n, f in BenchConfig.model_fields.items()} <= dests
    with pytest.raises(UserError, match="unknown setting"):
        BenchConfig.of(list_targets=True)  # CLI-only actions are not run settings
