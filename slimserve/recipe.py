"""Recipes: YAML validated by pydantic. Unknown keys are errors; errors name file, field and choices.

```yaml
version: 1
name: llama-int4
base:
  source: smollm2-135m          # built-in name | local HF dir | .gguf file | hub id
variants:
  - name: smollm2-fp32
    tier: reference
    reference: true
  - name: smollm2-int4-g128
    tier: nano
    steps:
      - quantize: {method: rtn, bits: 4, group_size: 128, symmetric: false}
    gates: {max_ppl_increase: 0.25, max_kld: 0.2}
```
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import types
import typing
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from .errors import UserError, UserErrors
from .steps import DISCRIMINATOR, STEP_KINDS, STEPS

SCHEMA_VERSION = 1
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseSpec(_Strict):
    """The model every variant starts from."""

    source: str = Field(description="built-in name (smollm2-135m), local HF dir, .gguf file, or hub id")
    revision: str | None = Field(None, description="hub revision (hub ids only)")
    gguf_file: str | None = Field(None, description="GGUF file name inside a hub repo or directory")
    trust_remote_code: bool = Field(False, description="run model code from the source; off unless you trust it")
    dtype: Literal["float32"] = "float32"


class Gates(_Strict):
    """Quality gates, checked against the reference on held-out text (slimserve/gates.py).

    `slimserve bench` checks them on every run and marks the variant passed or rejected; rejected variants are left
    out of tiers, exports and the report. `check: build` also checks them before the variant lands in the catalog.

    ```yaml
    gates: {max_kld: 0.08, min_top1: 0.83, check: build}
    ```
    """

    max_ppl_increase: float | None = Field(None, ge=0, description="relative perplexity increase, 0.10 = +10%")
    max_kld: float | None = Field(None, ge=0, description="mean KL divergence vs the reference")
    min_top1: float | None = Field(None, ge=0, le=1, description="top-1 agreement with the reference")
    check: Literal["bench", "build"] = Field("bench", description="bench: on every bench run; build: also at build")

    @model_validator(mode="after")
    def _some_limit(self):
        if all(getattr(self, k) is None for k in ("max_ppl_increase", "max_kld", "min_top1")):
            raise ValueError("gates need at least one of max_ppl_increase, max_kld, min_top1")
        return self


# Cross-field checks, pure so that they also run on the raw input when a field error made pydantic skip them.
def reference_problem(reference: Any, steps: Any) -> str | None:
    if reference is True and steps:
        return "a reference variant is the unmodified base and takes no steps"
    return None


def variants_problems(names: list[Any], references: list[Any]) -> list[str]:
    problems = []
    counts = Counter(str(n) for n in names)  # linear: a recipe may list many variants
    dup = sorted(n for n, k in counts.items() if k > 1)
    if dup:
        problems.append(f"variant names must be unique; repeated: {', '.join(dup)}")
    if sum(r is True for r in references) > 1:
        problems.append("at most one variant may be the reference")
    return problems


class Variant(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    tier: str = Field(pattern=NAME_PATTERN)
    reference: bool = Field(False, description="this variant is the unmodified base (the quality reference)")
    description: str | None = None
    steps: list[Any] = Field(default_factory=list)
    gates: Gates | None = None

    @model_validator(mode="after")
    def _reference_has_no_steps(self):
        problem = reference_problem(self.reference, self.steps) or grid_problem(self.steps)
        if problem:
            raise ValueError(problem)
        return self


def grid_problem(steps: list[Any]) -> str | None:
    """A per-channel quantize grid that a later MatMulNBits export would have to reuse: caught before any work."""
    grid = None
    for j, step in enumerate(steps):
        q, e = getattr(step, "quantize", None), getattr(step, "export", None)
        if q is not None and hasattr(q, "group_size"):
            grid = (j, q)
        if e is None or grid is None or getattr(e, "weights", None) not in ("int4", "int8"):
            continue
        j0, q = grid
        if q.group_size is None and e.use_step_qparams and e.on_unsupported_grid == "error":
            return (
                f"steps[{j0}].quantize rounds per output channel (group_size: null), which steps[{j}].export cannot "
                "hold in MatMulNBits (block sizes 16, 32, 64, 128, 256): give the quantize step a group_size "
                "(32, 64 or 128), or set `on_unsupported_grid: reround` on the export"
            )
    return None


class Recipe(_Strict):
    version: Literal[1] = Field(description="recipe schema version")
    name: str = Field(pattern=NAME_PATTERN)
    base: BaseSpec
    variants: list[Variant] = Field(min_length=1)

    @field_validator("variants")
    @classmethod
    def _unique(cls, variants):
        problems = variants_problems([v.name for v in variants], [v.reference for v in variants])
        if problems:
            raise ValueError("; ".join(problems))
        return variants

    def content_hash(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def _step_kind(v: Any) -> str | None:
    if isinstance(v, dict) and len(v) == 1:
        key = next(iter(v))
        return key if key in STEP_KINDS else None
    if isinstance(v, BaseModel):
        return next(k for k in STEP_KINDS if k in type(v).model_fields)
    return None


def _method_union(kind: str):
    configs = [STEPS[kind].get(m).config for m in STEPS[kind].names()]
    if not configs:
        return None
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[tuple(configs)], Field(discriminator=DISCRIMINATOR[kind])]  # noqa: UP007


@lru_cache(maxsize=1)
def recipe_model() -> type[Recipe]:
    """The Recipe class with the step union built from the registered methods."""
    from pydantic import create_model

    members = []
    for kind in STEP_KINDS:
        union = _method_union(kind)
        if union is None:
            continue
        step_cls = create_model(f"{kind.capitalize()}Step", __base__=_Strict, **{kind: (union, ...)})
        members.append(Annotated[step_cls, Tag(kind)])
    step_type = Annotated[
        Union[tuple(members)],  # noqa: UP007
        Discriminator(
            _step_kind,
            custom_error_type="step_kind",
            custom_error_message=f"each step is a mapping with exactly one key: {', '.join(STEP_KINDS)}",
        ),
    ]
    variant = create_model("Variant", __base__=Variant, steps=(list[step_type], Field(default_factory=list)))
    return create_model("Recipe", __base__=Recipe, variants=(list[variant], Field(min_length=1)))


def steps_of(variant) -> list[tuple[str, Any]]:
    """[(kind, config)] in recipe order."""
    return [(_step_kind(s), getattr(s, _step_kind(s))) for s in variant.steps]


# ---------------------------------------------------------------- loading and errors


def load_recipe(path: str | Path) -> Recipe:
    p = Path(path)
    if p.is_dir():
        raise UserError(f"recipe path '{p}' is a directory, not a recipe file", hint="give the path of a .yaml file")
    if not p.is_file():
        raise UserError(f"recipe file '{p}' does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"not readable as YAML: {str(e).splitlines()[0]}", file=str(p)) from None
    except RecursionError:
        raise UserError("not readable as YAML: nested too deeply", file=str(p)) from None
    except OSError as e:
        raise UserError(f"cannot read the recipe ({e.strerror})", file=str(p)) from None
    try:
        return parse_recipe(data, file=str(p))
    except RecursionError:
        raise UserError("recipe is nested too deeply to be a recipe", file=str(p)) from None


def parse_recipe(data: Any, file: str | None = None) -> Recipe:
    if not isinstance(data, dict):
        raise UserError("a recipe is a YAML mapping with keys version, name, base, variants", file=file)
    try:
        return recipe_model().model_validate(data)
    except ValidationError as e:
        raise _user_errors(e, data, file) from None


def _user_errors(e: ValidationError, data: dict, file: str | None) -> UserErrors:
    """Every problem, one UserError each: pydantic's errors plus the cross-field checks it skipped."""
    errs = [(err, *_clean_loc(err["loc"])) for err in e.errors(include_url=False)]
    # A union reports one error per member; keep the one that got deepest into the input.
    keys = [_dedup_key(err, path) for err, path, _ in errs]
    errs = [x for x, k in zip(errs, keys, strict=True) if not any(o != k and o.startswith(k + ".") for o in keys)]
    found = _merge_same_field([_one_error(err, path, model, file) for err, path, model in errs])
    found += [u for u in _skipped_checks(data, file) if not any(u.message in f.message for f in found)]
    return UserErrors("invalid recipe", found, file=file)


def _merge_same_field(errors: list[UserError]) -> list[UserError]:
    """The members of a plain union fail at the same field: one line saying what each would accept."""
    by_field: dict[Any, list[UserError]] = {}
    for u in errors:
        by_field.setdefault(u.field, []).append(u)
    out = []
    for field, group in by_field.items():
        if len(group) == 1 or field is None:
            out.extend(group)
            continue
        got = [m.group(0) for u in group if (m := re.search(r" \(got .*\)$", u.message))]
        parts = [u.message.removesuffix(got[0] if got else "").removeprefix("Input should be ") for u in group]
        msg = "Input should be " + ", or ".join(parts) + (got[0] if got else "")
        out.append(UserError(msg, file=group[0].file, field=field))
    return out


def _dedup_key(err: dict, path: str) -> str:
    # An unknown key is reported at its parent's path; it is its own problem, not a union member of the parent.
    return f"{path}.{err['loc'][-1]}" if err["type"] == "extra_forbidden" else path


def _one_error(err: dict, path: str, model: type[BaseModel] | None, file: str | None) -> UserError:
    msg = err["msg"].removeprefix("Value error, ")
    allowed = None
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        allowed = sorted(model.model_fields) if model else None
        close = difflib.get_close_matches(key, allowed or [], n=1)
        msg = f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else "")
    elif err["type"] == "union_tag_invalid":
        kind = path.rsplit(".", 1)[-1]
        msg = f"unknown {kind} method {err['input'].get(DISCRIMINATOR.get(kind, 'method'))!r}"
        allowed = STEPS[kind].names() if kind in STEPS else None
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        msg += f" (got {err['input']!r})"
    return UserError(msg, file=file, field=path or None, allowed=allowed or None)


def _skipped_checks(data: dict, file: str | None) -> list[UserError]:
    """The recipe-level cross-field checks on the raw input (pydantic runs them only when the fields are valid)."""
    variants = data.get("variants")
    if not isinstance(variants, list):
        return []
    found = []
    raw = [v for v in variants if isinstance(v, dict)]
    for problem in variants_problems([v.get("name") for v in raw], [v.get("reference") for v in raw]):
        found.append(UserError(problem, file=file, field="variants"))
    for i, v in enumerate(variants):
        problem = reference_problem(v.get("reference"), v.get("steps")) if isinstance(v, dict) else None
        if problem:
            found.append(UserError(problem, file=file, field=f"variants[{i}]"))
    return found


def _clean_loc(loc: tuple) -> tuple[str, type[BaseModel] | None]:
    """Turn pydantic's loc (with union tags) into `variants[1].steps[0].quantize.group_size`.

    Also returns the model class that holds the last key, to list its allowed keys.
    """
    parts: list[str] = []
    model: Any = recipe_model()
    holder = None
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
            model = _item_type(model)
            continue
        if typing.get_origin(_unwrap(model)) is dict:
            parts[-1] += f"[{item!r}]"
            model = _item_type(model)
            continue
        fields = getattr(model, "model_fields", None) if isinstance(model, type) else None
        if fields is not None and item in fields:
            parts.append(item)
            holder = model
            model = _unwrap(fields[item].annotation)
        else:  # a union tag: pick the member it names
            model = _pick(model, item)
    return ".".join(parts), holder if holder is None else (model if _is_model(model) else holder)


def _is_model(t) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _unwrap(t):
    """Strip Annotated[...] and Optional (X | None) down to X."""
    while True:
        if typing.get_origin(t) is Annotated:
            t = typing.get_args(t)[0]
            continue
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if typing.get_origin(t) in (Union, types.UnionType) and len(args) == 1:
            t = args[0]
            continue
        return t


def _item_type(t):
    t = _unwrap(t)
    args = typing.get_args(t)
    if typing.get_origin(t) in (list, dict) and args:
        return _unwrap(args[-1])
    return t


def _pick(t, tag):
    t = _unwrap(t)
    for member in typing.get_args(t) or ():
        member = _unwrap(member)
        if not _is_model(member):
            continue
        if member.__name__ == tag:
            return member
        for key in ("method", "format", *STEP_KINDS):
            f = member.model_fields.get(key)
            if f is None:
                continue
            if key in STEP_KINDS and key == tag:
                return member
            if typing.get_args(f.annotation) == (tag,):
                return member
    return t


def json_schema() -> dict:
    """JSON Schema of recipes, for editors (yaml-language-server)."""
    schema = recipe_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "slimserve recipe"
    return schema
