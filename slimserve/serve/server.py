"""The server's state: which variants it serves, their engines and schedulers, loading, the catalog records.

``serve(...)`` (what `slimserve serve` calls) loads nothing itself before the socket is open: uvicorn starts, the
models load on a background thread (``/health`` says 503 until they are ready), and shutdown (SIGTERM, Ctrl-C) stops
admitting, lets in-flight requests finish for ``grace_s``, then removes the catalog's `served` records.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UserError

DEFAULT_PORT = 8000
TARGET_KINDS = {"onnx-cpu": "onnx-fused", "cpu": "torch", "cuda": "torch"}  # serve target -> engine kind


class ServeConfig(BaseModel):
    """What `slimserve serve` runs; the CLI flags are its fields.

    ```yaml
    variants: [smollm2-onnx-int4-gptq]   # empty: every servable variant of the catalog
    port: 8000
    threads: 2
    max_batch: 16      # sequences decoded together per variant (1: one request at a time)
    max_queue: 64      # waiting requests per variant before 429
    ```
    """

    model_config = ConfigDict(extra="forbid")

    variants: list[str] = Field(default_factory=list)
    catalog: str | None = None
    target: Literal["onnx-cpu", "cpu", "cuda"] | None = None  # only variants that run there (default: each its own)
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    threads: int | None = Field(default=None, ge=1)
    max_batch: int = Field(default=16, ge=1, le=256)
    max_queue: int = Field(default=64, ge=0)
    prefill_tokens: int = Field(default=64, ge=1)  # prompt tokens admitted between two decode steps (>= 1 prompt)
    context: int = Field(default=2048, ge=16)
    max_tokens: int = Field(default=512, ge=1)  # when a request gives none
    request_timeout_s: float = Field(default=600.0, gt=0)
    grace_s: float = Field(default=30.0, ge=0)
    api_key: str | None = None
    record: bool = True  # write `served` records into the catalog


@dataclass
class ServedModel:
    """One variant as served: its engine, scheduler and what /v1/models says about it."""

    name: str
    engine: Any
    scheduler: Any
    tier: str | None = None
    target: str = "cpu"
    price_out: float | None = None
    chat_stop_ids: frozenset[int] = frozenset()
    aliases: tuple[str, ...] = ()

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def id_at_target(self) -> str:
        return f"{self.name}@{self.target}"


@dataclass
class ServerState:
    cfg: ServeConfig
    metrics: Any
    models: dict[str, ServedModel] = field(default_factory=dict)
    ready: bool = False
    load_error: str | None = None
    endpoint: str | None = None
    closing: bool = False

    def lookup(self, model: str) -> ServedModel | None:
        """A served model by its id or its routing-target id ('variant@target', what catalog exports send)."""
        if model in self.models:
            return self.models[model]
        return next((m for m in self.models.values() if model == m.id_at_target), None)

    def ids(self) -> list[str]:
        return sorted(self.models)


def _servable(cat, cfg: ServeConfig) -> list[Any]:
    """Catalog rows to serve: the named ones, or every one an engine runs (what is left out is said)."""
    from ..generate import engine_kind
    from .engines import ENGINES

    rows = [cat.get(n) for n in cfg.variants] if cfg.variants else cat.variants()
    keep = []
    for row in rows:
        kind = engine_kind(row.manifest)
        if kind not in ENGINES or (row.status == "rejected" and not cfg.variants):
            why = "rejected by its gates" if row.status == "rejected" else f"no serving engine for '{kind}'"
            if cfg.variants:
                raise UserError(f"variant '{row.name}' cannot be served: {why}", allowed=ENGINES.names())
            print(f"note: not serving {row.name}: {why}", file=sys.stderr)
            continue
        if cfg.target and TARGET_KINDS[cfg.target] != kind:
            if cfg.variants:
                raise UserError(
                    f"variant '{row.name}' ({kind}) does not run on target '{cfg.target}'",
                    field="--target",
                    allowed=[t for t, k in TARGET_KINDS.items() if k == kind],
                )
            print(f"note: not serving {row.name}: it does not run on {cfg.target}", file=sys.stderr)
            continue
        keep.append(row)
    if not keep:
        raise UserError(f"nothing to serve in catalog '{cat.root}'", hint="build a variant: slimserve build RECIPE")
    return keep


def _price(cat, name: str, target: str) -> float | None:
    """The measured USD per 1M output tokens of variant@target, if benchmarked."""
    try:
        from ..router.api import collect

        c = collect(cat, target, include_rejected=True, quiet=True)
    except Exception:  # noqa: BLE001 (no benchmark store yet: no price, said as null)
        return None
    return next((t.usd_per_1m_output for t in c.targets if t.id == f"{name}@{target}"), None)


def load_models(state: ServerState) -> None:
    """Open every variant's engine and start its scheduler (runs on a background thread)."""
    from ..catalog import Catalog
    from .engines import open_engine
    from .scheduler import Scheduler

    cfg = state.cfg
    cat = Catalog.open(cfg.catalog, create=False)
    for row in _servable(cat, cfg):
        engine = open_engine(row.path, row.manifest, slots=cfg.max_batch, context=cfg.context, threads=cfg.threads,
                             device=cfg.target if cfg.target in ("cpu", "cuda") else None)  # fmt: skip
        sched = Scheduler(
            engine, max_queue=cfg.max_queue, name=row.name, observe=state.metrics, prefill_tokens=cfg.prefill_tokens
        )
        sched.start()
        tok = engine.tokenizer
        chat_stop = set(engine.eos_ids)
        if "<|im_end|>" in tok.get_vocab():
            chat_stop.add(int(tok.convert_tokens_to_ids("<|im_end|>")))
        state.models[row.name] = ServedModel(
            name=row.name, engine=engine, scheduler=sched, tier=row.tier, target=engine.target,
            price_out=_price(cat, row.name, engine.target), chat_stop_ids=frozenset(chat_stop),
        )  # fmt: skip
    if cfg.record and state.endpoint:
        from .. import served

        served.add(cat, state.endpoint, [(m.name, m.target) for m in state.models.values()])


def start_loading(state: ServerState) -> threading.Thread:
    def run() -> None:
        try:
            load_models(state)
            state.ready = True
            state.metrics.ready.set(1)
            print(f"ready: serving {', '.join(state.ids())} at {state.endpoint}", file=sys.stderr, flush=True)
        except Exception as e:  # noqa: BLE001 (reported by /health and on stderr; the process stays up to say so)
            state.load_error = f"{type(e).__name__}: {e}"
            print(f"error: loading failed: {state.load_error}", file=sys.stderr, flush=True)

    t = threading.Thread(target=run, name="slimserve-load", daemon=True)
    t.start()
    return t


def shutdown(state: ServerState) -> None:
    """Stop every scheduler (in-flight requests had uvicorn's grace period) and drop the catalog records."""
    state.closing = True
    for m in state.models.values():
        m.scheduler.stop(grace_s=0)
        m.engine.close()
    if state.cfg.record:
        from .. import served
        from ..catalog import Catalog

        try:
            served.remove(Catalog.open(state.cfg.catalog, create=False))
        except UserError:
            pass
