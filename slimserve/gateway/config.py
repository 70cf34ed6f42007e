"""The gateway's YAML config: tiers (local catalog variants or external models), routers, the semantic cache.

    version: 1
    catalog: catalog
    tiers:                                   # cheapest first
      - {name: nano, variant: smollm2-onnx-int4-gptq, api_base: http://127.0.0.1:8001/v1}
      - {name: premium, kind: external, model: gpt-4o-mini, api_key_env: OPENAI_API_KEY}
    routers:
      - {name: len, kind: rules, default: nano, rules: [{tier: premium, min_tokens: 400}]}
      - {name: learned, kind: threshold, tiers: [nano, premium], strong_share: 0.3}
    default_router: learned
    cache: {enabled: true, max_false_hit_rate: 0.02}

Every model forbids unknown keys; `load_config` names the file and the field path of each error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import UserError, UserErrors

Unit = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierSpec(_Strict):
    """One tier. Local tiers name a catalog variant and the `slimserve serve` endpoint that serves it; external
    tiers name a LiteLLM model and the environment variable holding its key (never the key itself)."""

    name: str = Field(min_length=1)
    kind: Literal["local", "external"] = "local"
    variant: str | None = None  # catalog variant (local): prices and scoring come from it
    target: str | None = None  # bench target whose measured price to use (default: the cheapest measured)
    model_path: str | None = None  # local model files outside the catalog, for scoring only (HF dir or .gguf)
    api_base: str | None = None  # local: http://host:port/v1 of `slimserve serve`; external: optional override
    model: str | None = None  # external: the LiteLLM model name; local: the served model name (default: variant)
    api_key_env: str | None = None  # external: the environment variable with the key
    litellm_params: dict[str, Any] = Field(default_factory=dict)  # extra LiteLLM kwargs (mock_response in tests)
    usd_per_1m_input: float | None = Field(None, ge=0)  # external list price (local prices are measured)
    usd_per_1m_output: float | None = Field(None, ge=0)
    timeout_s: float = Field(60.0, gt=0)
    # tiers `route serve` tries, in order, when this one errors, times out or answers 429 (default: the tiers after
    # it in the config's order; [] for none). An external tier never falls back to a local one unless
    # allow_local_fallback is set.
    fallbacks: list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> TierSpec:
        if self.kind == "external":
            if not self.model:
                raise ValueError("an external tier needs 'model' (the LiteLLM model name)")
            if "api_key" in self.litellm_params:
                raise ValueError("keys are read from the environment: set 'api_key_env', not litellm_params.api_key")
        elif not (self.variant or self.model_path):
            raise ValueError("a local tier needs 'variant' (a catalog variant) or 'model_path'")
        return self


class Rule(_Strict):
    """One rule of the `rules` router: every condition given must hold; the first matching rule wins."""

    tier: str
    min_tokens: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    regex: str | None = None
    keywords: list[str] = Field(default_factory=list)
    has_tools: bool | None = None
    has_code: bool | None = None
    min_turns: int | None = Field(None, ge=1)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            import re

            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"regex does not compile: {e}") from None
        return v


class RulesRouter(_Strict):
    name: str
    kind: Literal["rules"]
    rules: list[Rule] = Field(min_length=1)
    default: str


class SemanticRoute(_Strict):
    name: str
    tier: str
    utterances: list[str] = Field(min_length=1)
    threshold: Unit = 0.5  # cosine similarity a prompt needs to take this route (fitted by `route fit`)


class SemanticRouter(_Strict):
    """Routes by example utterances. `fit` on labelled items adds two routes (weak suffices / strong needed) and a
    kNN score: the similarity-weighted share of "strong needed" among the k nearest training items."""

    name: str
    kind: Literal["semantic"]
    routes: list[SemanticRoute] = Field(default_factory=list)
    default: str | None = None
    tiers: list[str] = Field(default_factory=list, max_length=2)  # [weak, strong] for the fitted kNN score
    k: int = Field(15, ge=1)
    threshold: Unit | None = None  # on the kNN score; set by fit from strong_share
    strong_share: Unit = 0.3
    fitted: str | None = None  # .npz with the fitted examples (embeddings + labels), written by fit


class ThresholdRouter(_Strict):
    """RouteLLM-style: a learned scorer (logistic regression on MiniLM embeddings) gives P(the weak tier fails);
    the request goes to tiers[i] where i counts the thresholds the score reaches (one threshold for two tiers)."""

    name: str
    kind: Literal["threshold"]
    tiers: list[str] = Field(min_length=2)
    thresholds: list[Unit] = Field(default_factory=list)  # ascending; set by fit from strong_share
    strong_share: Unit | None = 0.3  # calibrate the threshold to this share of strong calls ...
    quality_floor: Unit | None = None  # ... or to the lowest share whose accuracy reaches this floor
    C: float = Field(1.0, gt=0)
    fitted: str | None = None  # .json with the fitted coefficients, written by fit


class CascadeRouter(_Strict):
    """The weak tier answers first; its confidence (choice margin, or the mean / min token log-prob when generating)
    below `threshold` escalates to the next tier. The weak tier's tokens are paid for either way. `route serve` sees
    generations only: there the signal must be mean_logprob or min_logprob, and threshold a log-prob (e.g. -1.5)."""

    name: str
    kind: Literal["cascade"]
    tiers: list[str] = Field(min_length=2)
    signal: Literal["margin", "mean_logprob", "min_logprob"] = "margin"
    threshold: float | None = None  # confidence below this escalates; set by fit from strong_share
    strong_share: Unit = 0.3


class RandomRouter(_Strict):
    name: str
    kind: Literal["random"]
    tiers: list[str] = Field(min_length=2, max_length=2)
    strong_share: Unit = 0.5
    seed: int = 0


RouterSpec = Annotated[
    RulesRouter | SemanticRouter | ThresholdRouter | CascadeRouter | RandomRouter, Field(discriminator="kind")
]
ROUTER_KINDS = ("cascade", "random", "rules", "semantic", "threshold")


class CacheConfig(_Strict):
    enabled: bool = True
    path: str | None = None  # SQLite file (default: <config dir>/route-cache.sqlite)
    ttl_s: float = Field(3600.0, gt=0)
    max_entries: int = Field(10_000, ge=1)
    threshold: Unit | None = None  # cosine similarity for a semantic hit; set by cache-eval from max_false_hit_rate
    max_false_hit_rate: Unit = 0.02
    cache_sampled: bool = False  # cache responses made at temperature > 0


class GatewayConfig(_Strict):
    version: Literal[1] = 1
    catalog: str | None = None
    tiers: list[TierSpec] = Field(min_length=1)
    routers: list[RouterSpec] = Field(default_factory=list)
    default_router: str | None = None
    cache: CacheConfig = CacheConfig()
    allow_local_fallback: bool = False  # an external tier that fails (or lacks its key) may fall back to a local one
    scores_dir: str | None = None  # per-item scores of `route fit/eval` (default: <config dir>/route-scores)
    fitted_on: dict[str, Any] | None = None  # written by fit: {data, split, n, weak, strong}

    @model_validator(mode="after")
    def _names(self) -> GatewayConfig:
        tiers = [t.name for t in self.tiers]
        if len(set(tiers)) != len(tiers):
            raise ValueError(f"tier names repeat: {tiers}")
        routers = [r.name for r in self.routers]
        if len(set(routers)) != len(routers):
            raise ValueError(f"router names repeat: {routers}")
        if self.default_router is not None and self.default_router not in routers:
            raise ValueError(f"default_router '{self.default_router}' is not a router (routers: {routers})")
        return self

    def tier(self, name: str) -> TierSpec:
        return next(t for t in self.tiers if t.name == name)

    def fallback_chain(self, name: str) -> list[str]:
        """The tier, then the tiers tried after it, in order (external tiers skip local ones unless allowed)."""
        first = self.tier(name)
        names = [t.name for t in self.tiers]
        rest = first.fallbacks if first.fallbacks is not None else names[names.index(name) + 1 :]
        if first.kind == "external" and not self.allow_local_fallback:
            rest = [n for n in rest if self.tier(n).kind == "external"]
        return [name] + [n for n in rest if n != name]

    def router(self, name: str) -> RouterSpec:
        for r in self.routers:
            if r.name == name:
                return r
        raise UserError(f"no router '{name}'", field="--router", allowed=[r.name for r in self.routers])


def router_tiers(r: Any) -> list[str]:
    """Every tier name a router config refers to."""
    names = list(getattr(r, "tiers", []) or [])
    names += [x.tier for x in getattr(r, "rules", [])] + [x.tier for x in getattr(r, "routes", [])]
    return names + ([r.default] if getattr(r, "default", None) else [])


def _loc(loc: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _check_refs(cfg: GatewayConfig, file: str) -> list[UserError]:
    tiers = [t.name for t in cfg.tiers]
    errs = [
        UserError(
            f"tier '{t.name}' falls back to tier '{name}'",
            file=file,
            field=f"tiers[{i}].fallbacks",
            allowed=[n for n in tiers if n != t.name],
        )  # fmt: skip
        for i, t in enumerate(cfg.tiers)
        for name in t.fallbacks or []
        if name not in tiers or name == t.name
    ]
    for i, r in enumerate(cfg.routers):
        for name in router_tiers(r):
            if name not in tiers:
                errs.append(UserError(f"router '{r.name}' names tier '{name}'", file=file, field=f"routers[{i}]",
                                      allowed=tiers))  # fmt: skip
        th = getattr(r, "thresholds", None)
        if th and (len(th) != len(r.tiers) - 1 or list(th) != sorted(th)):
            errs.append(UserError(f"{len(r.tiers)} tiers need {len(r.tiers) - 1} ascending thresholds, got {th}",
                                  file=file, field=f"routers[{i}].thresholds"))  # fmt: skip
    return errs


def check_variants(cfg: GatewayConfig, catalog: Any, file: str) -> None:
    """Every local tier's variant exists in the catalog."""
    names = catalog.names()
    errs = [
        UserError(
            f"tier '{t.name}' names variant '{t.variant}', not in catalog '{catalog.root}'",
            file=file,
            field=f"tiers[{i}].variant",
            allowed=names or "(catalog is empty)",
        )  # fmt: skip
        for i, t in enumerate(cfg.tiers)
        if t.variant and t.variant not in names
    ]
    if errs:
        raise errs[0] if len(errs) == 1 else UserErrors("config names missing variants", errs, file=file)


def parse_config(data: Any, file: str = "<config>") -> GatewayConfig:
    try:
        cfg = GatewayConfig.model_validate(data)
    except ValidationError as e:
        errs = []
        for err in e.errors():
            loc = tuple(p for p in err["loc"] if p not in ROUTER_KINDS)  # drop the union's branch name
            allowed = ROUTER_KINDS if err["type"] == "union_tag_invalid" else None
            errs.append(UserError(err["msg"].removeprefix("Value error, "), file=file, field=_loc(loc) or None,
                                  allowed=allowed))  # fmt: skip
        raise errs[0] if len(errs) == 1 else UserErrors("invalid gateway config", errs, file=file) from None
    errs = _check_refs(cfg, file)
    if errs:
        raise errs[0] if len(errs) == 1 else UserErrors("invalid gateway config", errs, file=file)
    return cfg


def load_config(path: str | Path) -> GatewayConfig:
    p = Path(path)
    if not p.is_file():
        raise UserError("gateway config not found", file=str(p), hint="Write one with: slimserve route init")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML ({e})", file=str(p)) from None
    return parse_config(data, str(p))


def dump_config(cfg: GatewayConfig, path: str | Path) -> Path:
    """Write the config atomically (fit rewrites it with the fitted thresholds)."""
    from ..util import atomic_write_text

    text = yaml.safe_dump(cfg.model_dump(mode="json", exclude_defaults=True), sort_keys=False, width=120)
    p = Path(path)
    atomic_write_text(p, "# slimserve route config (slimserve route init/fit)\n" + text)
    return p


def resolve(cfg_path: str | Path, value: str | None, default: str) -> Path:
    """A path from the config, relative to the config file's folder."""
    base = Path(cfg_path).parent
    p = Path(value) if value else Path(default)
    return p if p.is_absolute() else base / p
