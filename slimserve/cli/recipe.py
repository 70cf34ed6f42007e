"""slimserve recipe check|schema"""

from __future__ import annotations

import argparse
import json
import sys

from . import COMMANDS


@COMMANDS.register("recipe")
def register(sub) -> None:
    p = sub.add_parser("recipe", help="validate recipes; print their JSON Schema")
    rs = p.add_subparsers(dest="recipe_command", metavar="SUBCOMMAND", required=True)
    c = rs.add_parser(
        "check",
        help="validate a recipe without building",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  slimserve recipe check recipes/llama-int4.yaml",
    )
    c.add_argument("files", nargs="+", metavar="FILE")
    c.set_defaults(func=check)
    s = rs.add_parser(
        "schema",
        help="print the recipe JSON Schema (for editors)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  slimserve recipe schema -o recipe.schema.json",
    )
    s.add_argument("-o", "--output", default=None, help="write to this file instead of stdout")
    s.set_defaults(func=schema)


def check(args) -> int:
    """Check every file and report each; exit 2 if any failed."""
    from ..errors import UserError
    from ..recipe import load_recipe

    failed = 0
    for f in args.files:
        try:
            r = load_recipe(f)
        except UserError as e:
            failed += 1
            print(f"error: {e.render(cli=True)}", file=sys.stderr)
            continue
        print(f"{f}: ok ({r.name}, {len(r.variants)} variant(s): {', '.join(v.name for v in r.variants)})")
    if failed and len(args.files) > 1:
        print(f"{failed} of {len(args.files)} recipe files failed", file=sys.stderr)
    return 2 if failed else 0


def schema(args) -> int:
    from ..recipe import json_schema
    from ..util import atomic_write_text

    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0
