"""`slimserve` command line. Each command module adds its subcommands; handlers call the Python API."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ..errors import GateRejected, UserError

# Command modules in help order; a module that is absent (optional extra) is skipped with a note.
COMMAND_MODULES = ("build", "catalog", "generate", "recipe", "bench", "router", "route")


def catalog_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--catalog",
        default=None,
        help="catalog directory (default: $SLIMSERVE_CATALOG or ./catalog)",
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slimserve",
        description="Build, benchmark and price compressed LLM variants as routing targets.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  slimserve build recipes/llama-int4.yaml\n  slimserve catalog list\n"
        "  slimserve bench --target cpu\n  slimserve catalog export --format litellm -o router.yaml",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ImportError as e:
            if e.name != f"{__name__}.{name}":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
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


def kwargs_of(args: argparse.Namespace, *names: str) -> dict:
    """The parsed flags that are keyword arguments of the API function."""
    return {n: getattr(args, n) for n in names}


if __name__ == "__main__":
    sys.exit(main())
