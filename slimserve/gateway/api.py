"""`slimserve route init|fit|eval`: a config from the catalog, routers fitted on a train split, and RouteLLM's
metrics on a disjoint test split, stored in the catalog index.

    from slimserve.gateway import api
    api.init("router.yaml", catalog="catalog")
    api.fit("router.yaml", data="arc_easy")
    report = api.evaluate("router.yaml", data="arc_easy", split="test")
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from . import config as C
from . import datasets as D
from . import evaluate as E
from . import scoring as S
from .routers import FitData, RouterContext, build_router

EVAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS route_evals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    config TEXT NOT NULL,
    dataset TEXT NOT NULL,
    split TEXT NOT NULL,
    n_train INTEGER,
    n_test INTEGER NOT NULL,
    weak TEXT NOT NULL,
    strong TEXT NOT NULL,
    acc_weak REAL NOT NULL,
    acc_strong REAL NOT NULL,
    report TEXT NOT NULL  -- JSON: every router's RouterResult, the command, the prices
)
"""
BLEND_INPUT_SHARE = 0.75  # the catalog's blended price: 3 input tokens per output token (router/tiers.yaml)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def open_catalog(cfg: C.GatewayConfig, cfg_path: Path, catalog: Any = None):
    from ..router.api import open_catalog as _open

    if catalog is None and cfg.catalog is not None:
        catalog = C.resolve(cfg_path, cfg.catalog, "catalog")
    return _open(catalog, create=False)


def load(cfg_path: str | Path, catalog: Any = None) -> tuple[C.GatewayConfig, Any]:
    """The validated config and its catalog (every local variant checked to exist)."""
    cfg = C.load_config(cfg_path)
    cat = open_catalog(cfg, Path(cfg_path), catalog) if any(t.variant for t in cfg.tiers) else None
    if cat is not None:
        C.check_variants(cfg, cat, str(cfg_path))
    return cfg, cat


# --------------------------------------------------------------------------------------------------------- prices


def tier_prices(tier: C.TierSpec, cat: Any) -> tuple[float | None, float | None, str | None]:
    """($/1M input, $/1M output, target id): the catalog's cheapest measured target of a local tier's variant, or
    the external tier's list price; None where unknown."""
    if tier.kind == "external":
        return tier.usd_per_1m_input, tier.usd_per_1m_output, tier.model
    if not tier.variant or cat is None:
        return None, None, None
    from ..router.api import collect

    found = [t for t in collect(cat, include_rejected=True, quiet=True).targets if t.variant == tier.variant]
    found = [t for t in found if tier.target is None or t.target == tier.target]
    if not found:
        return None, None, None
    best = min(found, key=lambda t: blend(t.usd_per_1m_input, t.usd_per_1m_output))
    return best.usd_per_1m_input, best.usd_per_1m_output, best.id


def blend(usd_in: float | None, usd_out: float | None) -> float | None:
    if usd_in is None or usd_out is None:
        return None
    return BLEND_INPUT_SHARE * usd_in + (1 - BLEND_INPUT_SHARE) * usd_out


def tier_price(tier: C.TierSpec, cat: Any) -> tuple[float | None, str | None]:
    """(blended $/1M, target id) from the catalog's measured prices, or the external tier's list price."""
    usd_in, usd_out, ref = tier_prices(tier, cat)
    return blend(usd_in, usd_out), ref


# ----------------------------------------------------------------------------------------------------------- init


def init(output: str | Path, *, catalog: Any = None, weak: str | None = None, strong: str | None = None,
         api_base: str = "http://127.0.0.1:8000/v1", force: bool = False) -> Path:  # fmt: skip
    """A starting config: the catalog's local variants cheapest first (or `weak`/`strong`: a variant or a model
    path), declared external models last, and one router of each kind over [weakest, strongest]."""
    from ..router.api import collect
    from ..router.api import open_catalog as _open

    out = Path(output)
    if out.exists() and not force:
        raise UserError(f"'{out}' exists", field="--output", hint="Use --force to replace it")
    cat = _open(catalog, create=False)
    found = collect(cat, quiet=True).targets
    local = sorted((t for t in found if t.kind == "local"), key=lambda t: t.usd_per_1m_output)
    names = cat.names()

    def spec(ref: str, name: str) -> dict:
        if ref in names:
            return {"name": name, "variant": ref, "api_base": api_base}
        if Path(ref).exists():
            return {"name": name, "model_path": str(Path(ref).resolve()), "api_base": api_base}
        raise UserError(f"'{ref}' is neither a catalog variant nor a model path", field="--weak/--strong",
                        allowed=names)  # fmt: skip

    if weak or strong:
        tiers = [spec(weak or local[0].variant, "weak"), spec(strong or local[-1].variant, "strong")]
    else:
        seen: dict[str, dict] = {}
        for t in local:
            seen.setdefault(t.variant, {"name": t.variant, "variant": t.variant, "target": t.target,
                                        "api_base": api_base})  # fmt: skip
        tiers = list(seen.values())
    for t in (t for t in found if t.kind == "external"):
        provider = (t.model or t.id).split("/")[0].upper().replace("-", "_")
        tiers.append({"name": t.id, "kind": "external", "model": t.model or t.id, "api_key_env": f"{provider}_API_KEY",
                      "usd_per_1m_input": t.usd_per_1m_input, "usd_per_1m_output": t.usd_per_1m_output})  # fmt: skip
    if not tiers:
        raise UserError(f"catalog '{cat.root}' has no benchmarked variants", hint="Run: slimserve bench")
    lo, hi = tiers[0]["name"], tiers[-1]["name"]
    pair = [lo, hi] if lo != hi else [lo, lo]
    routers = [
        {"name": "rules", "kind": "rules", "default": lo,
         "rules": [{"tier": hi, "has_code": True}, {"tier": hi, "has_tools": True}, {"tier": hi, "min_tokens": 300}]},
        {"name": "semantic", "kind": "semantic", "tiers": pair, "strong_share": 0.3},
        {"name": "threshold", "kind": "threshold", "tiers": pair, "strong_share": 0.3},
        {"name": "cascade", "kind": "cascade", "tiers": pair, "strong_share": 0.3},
        {"name": "random", "kind": "random", "tiers": pair, "strong_share": 0.3},
    ]  # fmt: skip
    cfg = C.parse_config({"version": 1, "catalog": str(Path(cat.root).resolve()), "tiers": tiers, "routers": routers,
                          "default_router": "threshold"}, str(out))  # fmt: skip
    return C.dump_config(cfg, out)


# ------------------------------------------------------------------------------------------------------- fit data


def _pair(cfg: C.GatewayConfig, weak: str | None, strong: str | None) -> tuple[C.TierSpec, C.TierSpec]:
    """The weak and strong tiers that answer the items: given, else the first and last local tiers."""
    local = [t for t in cfg.tiers if t.kind == "local"]
    names = [t.name for t in cfg.tiers]
    for flag_, v in (("--weak", weak), ("--strong", strong)):
        if v is not None and v not in names:
            raise UserError(f"no tier '{v}'", field=flag_, allowed=names)
    if len(local) < 2 and (weak is None or strong is None):
        raise UserError("evaluation needs two local tiers that can answer offline", field="tiers",
                        allowed=[t.name for t in local])  # fmt: skip
    w = cfg.tier(weak) if weak else local[0]
    s = cfg.tier(strong) if strong else local[-1]
    for t in (w, s):
        if t.kind != "local":
            raise UserError(f"tier '{t.name}' is external: only local tiers answer items offline", field="--weak")
    return w, s


def fit_data(cfg, cfg_path, cat, items: list[D.Item], weak, strong, ctx: RouterContext) -> FitData:
    store = S.ScoreStore(C.resolve(cfg_path, cfg.scores_dir, "route-scores") / "scores.sqlite")
    ws = S.score_tier(weak, items, store, cat)
    ss = S.score_tier(strong, items, store, cat)
    emb = ctx.embedder.encode([it.prompt for it in items])
    return FitData(
        prompts=[it.prompt for it in items],
        embeddings=emb,
        weak_correct=np.array([ws[it.id].correct for it in items]),
        strong_correct=np.array([ss[it.id].correct for it in items]),
        weak_margin=np.array([ws[it.id].margin(it.choices, it.normalize) for it in items]),
    )


def context(cfg, cfg_path) -> RouterContext:
    return RouterContext(Path(cfg_path), [t.name for t in cfg.tiers])


# ------------------------------------------------------------------------------------------------------ fit, eval


def fit(cfg_path: str | Path, *, data: str, limit: int | None = None, min_items: int = 20, weak: str | None = None,
        strong: str | None = None, catalog: Any = None, test_share: float = 0.5) -> C.GatewayConfig:  # fmt: skip
    """Fit every router on the train split and write the fitted config back (atomically)."""
    cfg, cat = load(cfg_path, catalog)
    name, items = D.load_items(data)
    train = D.split(items, "train", test_share=test_share, limit=limit, min_items=min_items)
    w, s = _pair(cfg, weak, strong)
    ctx = context(cfg, cfg_path)
    fd = fit_data(cfg, cfg_path, cat, train, w, s, ctx)
    _say(f"fit on {name} train: n={len(train)}, weak {w.name} {fd.weak_correct.mean():.3f}, "
         f"strong {s.name} {fd.strong_correct.mean():.3f}")  # fmt: skip
    routers = [build_router(r, ctx).fit(fd) for r in cfg.routers]
    fitted_on = {"data": name, "split": "train", "n": len(train), "weak": w.name, "strong": s.name}
    cfg = cfg.model_copy(update={"routers": routers, "fitted_on": fitted_on})
    C.dump_config(C.parse_config(cfg.model_dump(mode="json"), str(cfg_path)), cfg_path)
    return cfg


def evaluate(cfg_path: str | Path, *, data: str, split: str = "test", limit: int | None = None, min_items: int = 20,
             weak: str | None = None, strong: str | None = None, catalog: Any = None, test_share: float = 0.5,
             command: str | None = None, store: bool = True) -> dict:  # fmt: skip
    """Every router's call-performance curve on the split, against the random baseline; stored in the catalog."""
    cfg, cat = load(cfg_path, catalog)
    name, items = D.load_items(data)
    part = D.split(items, split, test_share=test_share, limit=limit, min_items=min_items)
    fo = cfg.fitted_on or {}
    n_train = fo.get("n") if fo.get("data") == name else None  # what the routers were fitted on, if this data
    w, s = _pair(cfg, weak, strong)
    ctx = context(cfg, cfg_path)
    fd = fit_data(cfg, cfg_path, cat, part, w, s, ctx)
    (pw, wid), (ps, sid) = tier_price(w, cat), tier_price(s, cat)
    prices = E.Prices(pw, ps, wid, sid)
    results = [E.random_baseline(fd.weak_correct, fd.strong_correct, prices)]
    for r in cfg.routers:
        router = build_router(r, ctx)
        if r.kind == "random":
            continue  # the baseline above is the random router's expectation
        results.append(E.summarize(r.name, r.kind, router.eval_scores(fd), fd.weak_correct, fd.strong_correct, prices))
    report = {
        "dataset": name, "split": split, "n_test": len(part), "n_train": n_train, "test_share": test_share,
        "weak": {"tier": w.name, "model": S.model_key(w), "accuracy": float(fd.weak_correct.mean()),
                 "usd_per_1m": pw, "price_target": wid},
        "strong": {"tier": s.name, "model": S.model_key(s), "accuracy": float(fd.strong_correct.mean()),
                   "usd_per_1m": ps, "price_target": sid},
        "oracle_accuracy": float((fd.weak_correct | fd.strong_correct).mean()),
        "routers": [r.to_dict() for r in results],
        "command": command, "config": str(Path(cfg_path).resolve()),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    if store and cat is not None:
        save_eval(cat, report)
    return report


def save_eval(cat: Any, report: dict) -> None:
    cat.ensure_schema(EVAL_SCHEMA)
    with cat.transaction() as con:
        con.execute(
            "INSERT INTO route_evals (created, config, dataset, split, n_train, n_test, weak, strong, acc_weak,"
            " acc_strong, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (report["created"], report["config"], report["dataset"], report["split"], report["n_train"],
             report["n_test"], report["weak"]["model"], report["strong"]["model"], report["weak"]["accuracy"],
             report["strong"]["accuracy"], json.dumps(report, sort_keys=True)),
        )  # fmt: skip


def stored_evals(cat: Any) -> list[dict]:
    cat.ensure_schema(EVAL_SCHEMA)
    with cat.connect() as con:
        return [json.loads(r[0]) for r in con.execute("SELECT report FROM route_evals ORDER BY id")]


def _f(x, fmt="{:.3f}") -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else fmt.format(x)


def markdown(report: dict) -> str:
    """The eval as a markdown table: every router against random, with the n of each split."""
    w, s = report["weak"], report["strong"]
    lines = [
        f"**{report['dataset']}**, {report['split']} split n={report['n_test']} (fit on the disjoint train split, "
        f"n={report['n_train']}). weak = `{w['tier']}` ({w['model']}) accuracy {w['accuracy']:.3f} at "
        f"{_f(w['usd_per_1m'], '${:.4f}')}/1M; strong = `{s['tier']}` ({s['model']}) accuracy {s['accuracy']:.3f} at "
        f"{_f(s['usd_per_1m'], '${:.4f}')}/1M; oracle {report['oracle_accuracy']:.3f}.",
        "",
        "| router | kind | APGR | CPT(50%) | CPT(80%) | accuracy at CPT(50%) | $/1M at CPT(50%) | $/1M at CPT(80%) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["routers"]:
        lines.append(f"| {r['router']} | {r['kind']} | {_f(r['apgr'])} | {_f(r['cpt50'], '{:.1%}')} | "
                     f"{_f(r['cpt80'], '{:.1%}')} | {_f(r['acc_at_cpt50'])} | {_f(r['usd_per_1m_at_cpt50'], '${:.4f}')} "
                     f"| {_f(r['usd_per_1m_at_cpt80'], '${:.4f}')} |")  # fmt: skip
    notes = [f"- {r['router']}: {r['note']}" for r in report["routers"] if r.get("note")]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"
