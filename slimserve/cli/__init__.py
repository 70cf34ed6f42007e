"""`slimserve` command line. Each command module adds its subcommands; handlers call the Python API."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from ..errors import GateRejected, UserError
from ..quiet import drop_misfired_tokenizer_warning
from ..registry import Registry

# Command modules in help order; each registers its `register(subparsers)` with @COMMANDS.register(name). One whose
# optional dependency is missing is left out of the parser and named in the help.
COMMAND_MODULES = ("build", "catalog", "generate", "recipe", "bench", "router", "serve", "route")
COMMANDS: Registry[Callable[[Any], None]] = Registry(
    "command", plugins=tuple(f"{__name__}.{m}" for m in COMMAND_MODULES)
)


def catalog_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--catalog",
        default=None,
        help="catalog directory (default: $SLIMSERVE_CATALOG or ./catalog)",
    )


def make_parser() -> argparse.ArgumentParser:
    missing = "".join(f"\n  {m.rpartition('.')[2]}: {why}" for m, why in COMMANDS.unavailable().items())
    parser = argparse.ArgumentParser(
        prog="slimserve",
        description="Build, benchmark and price compressed LLM variants as routing targets.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  slimserve build recipes/llama-int4.yaml\n  slimserve catalog list\n"
        "  slimserve bench --target cpu\n  slimserve catalog export --format litellm -o router.yaml"
        + (f"\n\nunavailable commands:{missing}" if missing else ""),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for _name, add in COMMANDS.items():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    drop_misfired_tokenizer_warning()
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        if args.verbose or os.environ.get("SLIMSERVE_TRACEBACK"):
            raise
        print(f"error: {e.render(cli=True)}", file=sys.stderr)
        return 2
    except GateRejected as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing partial was written", file=sys.stderr)
        return 130


def config_args(p: argparse.ArgumentParser, model, *, types: dict | None = None, skip: tuple[str, ...] = ()) -> None:
    """Add one option per field of a pydantic config: the field's alias or name as the flag, its description as
    the help, its default as the default. A bool that defaults to True becomes --no-NAME; types maps a field to
    its argparse type where the annotation is not int/float/str (e.g. comma lists)."""
    import typing

    for name, f in model.model_fields.items():
        if name in skip:
            continue
        spelled = (f.alias or name).replace("_", "-")
        kind = typing.get_args(f.annotation) or (f.annotation,)
        if f.annotation is bool:
            opt = f"--no-{spelled}" if f.default else f"--{spelled}"
            p.add_argument(opt, dest=f.alias or name, action="store_false" if f.default else "store_true",
                           help=f.description)  # fmt: skip
            continue
        typ = (types or {}).get(name) or next((t for t in (int, float) if t in kind), str)
        p.add_argument(f"--{spelled}", dest=f.alias or name, type=typ, default=f.default, help=f.description)


def config_of(model, args: argparse.Namespace, **extra):
    """The config a command's parsed flags describe: the flags that are the model's fields, validated."""
    names = {f.alias or n for n, f in model.model_fields.items()}
    return model.of(**{k: v for k, v in vars(args).items() if k in names}, **extra)


def kwargs_of(args: argparse.Namespace, *names: str) -> dict:
    """The parsed flags that are keyword arguments of the API function."""
    return {n: getattr(args, n) for n in names}


if __name__ == "__main__":
    sys.exit(main())
