"""BenchConfig: everything one `slimserve bench` run is asked to do, validated before any work.

Its fields are the `slimserve bench` flags (the CLI generates its options from them) and the keywords of
`slimserve.bench(...)`. A bad value fails here, naming the flag (CLI) or keyword (Python), before a model loads.
Kept free of torch so the CLI can build its parser without importing it.

    from slimserve.bench.api import run
    run(BenchConfig(target="cpu", limit=4, variants=["smollm2-int4-g128"]))
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import UserError, flag
from .cost import DEFAULT_SLO_MS
from .profiles import DEFAULT_PROFILE, get_profile


def _at_least_1(v: int | None) -> int | None:
    if v is not None and v < 1:
        raise ValueError(f"must be at least 1, got {v}")
    return v


def _positive(v: float | None) -> float | None:  # also refuses nan and inf
    if v is not None and not (math.isfinite(v) and v > 0):
        raise ValueError(f"must be a positive number, got {v:g}")
    return v


def _positive_ints(v: list[int] | None) -> list[int] | None:
    if v is not None and (not v or any(x < 1 for x in v)):
        raise ValueError(f"expected positive integers, got {','.join(map(str, v)) or 'none'}")
    return v


AtLeast1 = Annotated[int | None, AfterValidator(_at_least_1)]
Positive = Annotated[float, AfterValidator(_positive)]
OptPositive = Annotated[float | None, AfterValidator(_positive)]
Ints = Annotated[list[int] | None, AfterValidator(_positive_ints)]
PathLike = str | Path | None


class BenchConfig(BaseModel):
    """One bench run: which variants, where, how much to measure, how to price it, where the reports go.

    The speed/quality settings left at None take the profile's values (see profiles.py).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    variants: list[str] | None = Field(None, description="variants to run (default: every variant)")
    target: str = Field(
        "auto",
        description="where to run: cpu, cuda, onnx-cpu, neuron-static, a comma list, or auto (default): each variant "
        "on the first target that runs its artifact here (PyTorch formats on cpu, ONNX graphs on onnx-cpu)",
    )
    catalog: PathLike = Field(None, description="catalog directory (default: $SLIMSERVE_CATALOG or ./catalog)")
    threads: AtLeast1 = Field(None, description="CPU threads, at least 1 (default: torch's default)")
    hardware: str | None = Field(None, description="price-table key of this machine (default: local-cpu/local-gpu)")
    price_per_hour: OptPositive = Field(None, description="hourly price in USD; overrides the table")
    prices: PathLike = Field(None, description="a price table YAML replacing the shipped one")
    eval_text: PathLike = Field(None, description="text file for perplexity (default: Pride and Prejudice)")
    eval_mc: PathLike = Field(None, description="JSONL of {question, choices, answer} instead of ARC-Easy/HellaSwag")
    limit: AtLeast1 = Field(
        None, description="at most N perplexity windows and N questions per task (quick 16 and 10, full 32 and 50)"
    )
    slo_ms: Positive = Field(DEFAULT_SLO_MS, description="p99 inter-token latency SLO for the output price")
    profile: str = Field(
        DEFAULT_PROFILE,
        description="how much to measure: quick (default, a few minutes: 1 round, short scenarios, 16 perplexity "
        "windows) or full (published-table rigour: 5 rounds, batches 1,4,16, 32 windows; over an hour for 4 "
        "variants on 2 cores); the flags below override single values",
    )
    rounds: int | None = Field(
        None, ge=1, description="measurement rounds, interleaved across variants (quick 1, full 5)"
    )
    iters: int | None = Field(None, ge=1, description="minimum timed iterations per scenario and round (default 1)")
    min_seconds: float | None = Field(
        None, ge=0, description="minimum seconds per scenario and round (quick 0.5, full 1)"
    )
    new_tokens: int | None = Field(None, ge=2, description="tokens decoded in the decode scenario (quick 32, full 128)")
    batches: Ints = Field(None, description="batch sizes, e.g. 1,4,16 (quick 1,8; full 1,4,16)")
    prompt_lens: Ints = Field(None, description="prefill prompt lengths, e.g. 128,512 (quick 128; full 128,512)")
    speed: bool = Field(True, description="measure speed and price it (--no-speed skips both)")
    quality: bool = Field(True, description="measure quality (--no-quality skips it)")
    loop: str | None = Field(None, description="PyTorch decode loop: dynamic-kv (default), static-kv, generate")
    out: PathLike = Field(None, description="report folder (default: <catalog>/bench)")
    json_output: bool = Field(False, alias="json", description="print the records as JSON")
    verify: bool = Field(
        True, description="--no-verify: skip checking the variants' files against their manifests' sha256"
    )
    ray: str | None = Field(
        None,
        description="run each variant as a Ray task on the cluster at ADDRESS (HOST:PORT, auto, or local), with "
        "the target's resources (a GPU and the `cuda` label for cuda); the catalog must be on a path every node "
        "mounts; this process stores the results (README: Scale out)",
    )

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        get_profile(v)  # a UserError naming --profile and the allowed names
        return v

    @field_validator("out")
    @classmethod
    def _out_is_a_folder(cls, v: PathLike) -> PathLike:
        if v is not None and Path(v).exists() and not Path(v).is_dir():
            raise ValueError(f"'{v}' exists and is not a folder (reports are written into a folder)")
        return v

    @model_validator(mode="after")
    def _something_to_do(self) -> BenchConfig:
        if not self.speed and not self.quality:
            raise ValueError("nothing to do: both speed and quality are turned off")
        return self

    @classmethod
    def of(cls, **settings: Any) -> BenchConfig:
        """Validate keyword arguments (or parsed flags); a bad one is a UserError naming its flag/keyword."""
        try:
            return cls.model_validate(settings)
        except ValidationError as exc:
            raise _user_error(exc) from None

    def with_(self, **changes: Any) -> BenchConfig:
        """A copy with some fields changed, validated again."""
        return type(self).of(**{**self.model_dump(by_alias=True), **changes})

    def profile_overrides(self) -> dict[str, Any]:
        """The speed/quality settings given explicitly, on top of the profile (batches/prompt_lens as tuples)."""
        given = dict(rounds=self.rounds, iters=self.iters, min_seconds=self.min_seconds, new_tokens=self.new_tokens)
        given.update(limit=self.limit)
        given.update(batches=tuple(self.batches) if self.batches else None)
        given.update(prompt_lens=tuple(self.prompt_lens) if self.prompt_lens else None)
        return {k: v for k, v in given.items() if v is not None}


def option_of(name: str) -> Any:
    """The flag of a BenchConfig field (positional VARIANT for variants, --json for json_output)."""
    if name == "variants":
        return flag("VARIANT", "variants")
    field = BenchConfig.model_fields.get(name)
    spelled = (field.alias if field is not None and field.alias else name).replace("_", "-")
    return flag("--" + spelled, name if field is None or not field.alias else field.alias)


def _user_error(exc: ValidationError) -> UserError:
    err = exc.errors()[0]
    if err["type"] == "extra_forbidden":
        names = sorted(f.alias or n for n, f in BenchConfig.model_fields.items())
        return UserError(f"unknown setting '{err['loc'][0]}'", allowed=names)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] != "value_error":
        msg = f"{msg.lower()}, got {err.get('input')!r}"
    if not err["loc"]:
        return UserError(msg)
    return UserError(msg, field=option_of(str(err["loc"][0])))
