"""slimserve build RECIPE"""

from __future__ import annotations

import argparse

from . import COMMANDS, catalog_arg, kwargs_of


@COMMANDS.register("build")
def register(sub) -> None:
    p = sub.add_parser(
        "build",
        help="build every variant a recipe declares into the catalog",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  slimserve build recipes/llama-int4.yaml\n"
        "  slimserve build recipes/llama-int4.yaml --variant smollm2-int4-g128 --force\n"
        "  slimserve build recipes/llama-int4.yaml --catalog /data/catalog"
        "\n  slimserve build recipes/llama-int4.yaml --catalog /shared/catalog --ray head:6379",
    )
    p.add_argument("recipe", help="recipe YAML file")
    catalog_arg(p)
    p.add_argument(
        "--variant", dest="variants", action="append", metavar="NAME", help="build only this variant (repeatable)"
    )
    p.add_argument("--force", action="store_true", help="replace variants that already exist")
    p.add_argument("--base", default=None, metavar="SOURCE", help="use this model instead of the recipe's base.source")
    p.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="build the variants as Ray tasks on the cluster at ADDRESS (HOST:PORT, auto, or local); the catalog "
        "and $SLIMSERVE_CACHE must be on a path every node mounts (README: Scale out)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..builder import build

    build(args.recipe, **kwargs_of(args, "catalog", "variants", "force", "base", "ray"))
    return 0
