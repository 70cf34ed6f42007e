"""Gateway routers, metrics, data and cache: no models (a fake embedder), seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slimserve.errors import UserError
from slimserve.gateway import cache as K
from slimserve.gateway import config as C
from slimserve.gateway import datasets as D
from slimserve.gateway import evaluate as E
from slimserve.gateway.routers import FitData, Request, RouterContext, build_router


class FakeEmbedder:
    """Bag-of-letters unit vectors: similar texts get similar vectors, deterministic."""

    dim = 26

    def encode(self, texts):
        out = np.zeros((len(texts), 26), np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def encode_one(self, text):
        return self.encode([text])[0]

    def count_tokens(self, text):
        return len(text.split())


def cfg(routers, tiers=("weak", "strong")):
    return C.parse_config({"tiers": [{"name": t, "model_path": "/x"} for t in tiers], "routers": routers})


def ctx(tmp_path, tiers=("weak", "strong")):
    return RouterContext(tmp_path / "r.yaml", list(tiers), _embedder=FakeEmbedder())


def test_perfect_router_beats_random_and_ties_trace_the_straight_line():
    w = np.array([1, 0, 0, 1, 0, 1, 0, 0], bool)
    s = np.array([1, 1, 1, 0, 0, 1, 1, 0], bool)
    flat = E.call_performance(np.zeros(8), w, s)
    assert np.allclose(flat.accuracy, np.linspace(w.mean(), s.mean(), 9))
    p = E.Prices(0.1, 1.0)
    oracle = E.summarize("o", "threshold", (s & ~w).astype(float), w, s, p)
    rnd = E.random_baseline(w, s, p, draws=400)
    assert oracle.apgr > 0.9 and oracle.cpt50 <= 0.25
    assert abs(rnd.apgr - 0.5) < 0.1
    assert oracle.points[0]["usd_per_1m"] == pytest.approx(0.1) and oracle.points[-1]["usd_per_1m"] == pytest.approx(
        1.0
    )


def test_pgr_undefined_when_strong_is_not_better():
    w = np.array([1, 1, 0, 0], bool)
    r = E.summarize("x", "rules", np.arange(4.0), w, w, E.Prices(None, None))
    assert np.isnan(r.apgr) and r.note


def test_rules_router_picks_the_first_matching_rule(tmp_path):
    c = cfg([{"name": "r", "kind": "rules", "default": "weak",
              "rules": [{"tier": "strong", "has_code": True}, {"tier": "strong", "min_tokens": 5}]}])  # fmt: skip
    r = build_router(c.routers[0], ctx(tmp_path))
    assert r.decide(Request.from_prompt("hi there")).target == "weak"
    d = r.decide(Request.from_prompt("```python\nprint(1)\n```"))
    assert d.target == "strong" and d.score == 1.0 and "rule 0" in d.reason
    assert r.decide(Request.from_prompt("one two three four five six")).target == "strong"


def _data(n=80, seed=0):
    rng = np.random.default_rng(seed)
    hard = rng.random(n) < 0.5  # "zzz" prompts: only the strong tier answers them
    prompts = [("zzz yyy xxx " if h else "aaa bbb ccc ") + str(i) for i, h in enumerate(hard)]
    emb = FakeEmbedder().encode(prompts)
    return FitData(prompts, emb, ~hard, np.ones(n, bool), np.where(hard, 0.1, 0.9))


def test_threshold_semantic_cascade_learn_the_signal(tmp_path):
    c = cfg([{"name": "t", "kind": "threshold", "tiers": ["weak", "strong"], "strong_share": 0.4},
             {"name": "s", "kind": "semantic", "tiers": ["weak", "strong"], "strong_share": 0.4},
             {"name": "c", "kind": "cascade", "tiers": ["weak", "strong"], "strong_share": 0.4}])  # fmt: skip
    train, test = _data(seed=0), _data(seed=1)
    for spec in c.routers:
        fitted = build_router(spec, ctx(tmp_path)).fit(train)
        router = build_router(fitted, ctx(tmp_path))  # reloads the fitted files
        res = E.summarize(spec.name, spec.kind, router.eval_scores(test), test.weak_correct, test.strong_correct,
                          E.Prices(1, 2))  # fmt: skip
        assert res.apgr > 0.7, (spec.name, res.apgr)
    t = build_router(build_router(c.routers[0], ctx(tmp_path)).fit(train), ctx(tmp_path))
    assert t.decide(Request.from_prompt("zzz yyy xxx 5")).target == "strong"
    assert t.decide(Request.from_prompt("aaa bbb ccc 5")).target == "weak"
    assert json.loads((tmp_path / "r.t.json").read_text())["label"] == "strong_wins"


def test_config_errors_name_the_field():
    with pytest.raises(UserError) as e:
        cfg([{"name": "x", "kind": "magic", "tiers": ["weak", "strong"]}])
    assert "routers[0]" in str(e.value) and "threshold" in str(e.value)
    with pytest.raises(UserError) as e:
        cfg([{"name": "x", "kind": "random", "tiers": ["weak", "nope"]}])
    assert "nope" in str(e.value) and "allowed: weak, strong" in str(e.value)
    with pytest.raises(UserError) as e:
        cfg([{"name": "x", "kind": "threshold", "tiers": ["weak", "strong"], "thresholds": [1.5]}])
    assert "routers[0].thresholds[0]" in str(e.value)
    with pytest.raises(UserError) as e:
        C.parse_config({"tiers": [{"name": "p", "kind": "external"}]})
    assert "tiers[0]" in str(e.value)


def test_jsonl_errors_name_file_line_field(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(
        '{"question": "q?", "choices": ["a", "b"], "answer": 1}\n{"question": "q2", "choices": ["a"], "answer": 0}\n'
    )
    with pytest.raises(UserError) as e:
        D.load_jsonl(p)
    assert f"{p}:2: choices" in str(e.value)
    p.write_text('{"question": "q?", "choices": ["a", "b"], "answer": 2}\n')
    with pytest.raises(UserError, match=r":1: answer"):
        D.load_jsonl(p)
    p.write_text("not json\n")
    with pytest.raises(UserError, match=r":1: not valid JSON"):
        D.load_jsonl(p)


def test_splits_are_disjoint_and_too_few_items_is_an_error(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"question": f"q{i}?", "choices": ["a", "b"], "answer": i % 2}) + "\n"
                         for i in range(100)))  # fmt: skip
    items = D.load_jsonl(p)
    tr, te = D.split(items, "train", min_items=10), D.split(items, "test", min_items=10)
    assert not {i.id for i in tr} & {i.id for i in te} and len(tr) + len(te) == 100
    with pytest.raises(UserError, match="fewer than the 200"):
        D.split(items, "test", min_items=200)


def test_cache_exact_semantic_ttl_and_max_entries(tmp_path):
    emb = FakeEmbedder()
    c = K.SemanticCache(tmp_path / "c.sqlite", ttl_s=60, max_entries=2, threshold=0.95, embed=emb.encode_one)
    scope = K.scope_of("auto", {"temperature": 0})
    c.put(scope, "what is the capital of france", {"a": 1})
    assert c.get(scope, "what is the capital of france") == ({"a": 1}, "exact")
    hit = c.get(scope, "What is the capital of France?")
    assert hit and hit[1].startswith("semantic")
    assert c.get(K.scope_of("auto", {"temperature": 0, "max_tokens": 5}), "what is the capital of france") is None
    assert c.get(scope, "zebra quokka") is None
    c.put(scope, "b", {"b": 1})
    c.put(scope, "c", {"c": 1})
    assert len(c) == 2
    assert not K.cacheable({"temperature": 0.7}, False) and K.cacheable({"temperature": 0.7}, True)
    c.ttl_s = 1e-9
    assert c.get(scope, "c") is None


def test_calibration_meets_the_false_hit_target():
    sim = np.array([0.99, 0.98, 0.97, 0.9, 0.85, 0.8])
    same = np.array([True, True, True, False, True, False])
    got = K.calibrate(sim, same, 0.0)
    assert got["threshold"] > 0.9 and got["false_hit_rate"] == 0.0 and got["hits"] == 3


def test_scoring_only_the_choice_positions_gives_the_full_forward_loglikelihoods():
    from slimserve.bench.torch_runner import TorchRunner
    from slimserve.gateway.datasets import Item
    from slimserve.gateway.scoring import score_item
    from slimserve.testing import tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer()
    runner = TorchRunner(tiny_llama(seed=3, vocab_size=len(tok)), tok)

    class FullForward:  # the same model, without logits_from: every position's logits
        tokenizer = tok

        def logits(self, ids):
            return runner.logits(ids)

    item = Item("q1", "Which sea?", "Question: Which sea is the coldest?\nAnswer:", (" the Arctic one", " red"), 0)
    fast, full = score_item(runner, item), score_item(FullForward(), item)
    assert fast.logliks == pytest.approx(full.logliks, abs=1e-4) and fast.picked == full.picked
