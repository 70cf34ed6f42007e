"""slimserve catalog tier|export|add-external, and slimserve report."""

from __future__ import annotations

import argparse
import sys

from . import COMMANDS, catalog_arg, kwargs_of


@COMMANDS.register("router")
def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write the catalog report: one self-contained HTML page with plots and tables",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  slimserve report -o report.html\n  slimserve report -o cpu.html --target cpu",
    )
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")
    p.add_argument("--target", default=None, help="only this benchmark target (e.g. cpu)")
    p.add_argument("--rules", default=None, help="tier rules YAML (default: the stored tiers, else the packaged rules)")
    include_rejected_arg(p)
    catalog_arg(p)
    p.set_defaults(func=report_cmd)


def include_rejected_arg(p) -> None:
    p.add_argument(
        "--include-rejected",
        action="store_true",
        help="keep targets whose latest benchmark failed their recipe's quality gates (left out by default)",
    )


def register_catalog_commands(cs) -> None:
    """Add tier/export/add-external under `slimserve catalog` (called by cli/catalog.py)."""
    t = cs.add_parser(
        "tier",
        help="assign tiers from the measured cost/quality Pareto front (or keep the recipe labels)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  slimserve catalog tier\n  slimserve catalog tier --rules my-tiers.yaml\n"
        "  slimserve catalog tier --from-recipe\n  slimserve catalog tier --include-rejected",
    )
    t.add_argument("--rules", default=None, help="tier rules YAML (default: slimserve/router/tiers.yaml)")
    t.add_argument("--from-recipe", action="store_true", help="keep the tier labels the recipes gave")
    t.add_argument("--target", default=None, help="only this benchmark target (e.g. cpu)")
    include_rejected_arg(t)
    catalog_arg(t)
    t.set_defaults(func=tier_cmd)

    e = cs.add_parser(
        "export",
        help="export routing targets for LiteLLM, OpenRouter, RouteLLM or as slimserve JSON",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  slimserve catalog export --format litellm -o router.yaml\n"
        "  slimserve catalog export --format openrouter -o models.json\n"
        "  slimserve catalog export --format routellm -o routellm.yaml\n"
        "  slimserve catalog export --format json -o catalog.json --api-base http://gpu-box:8000/v1",
    )
    e.add_argument("--format", required=True, help="litellm, openrouter, routellm or json")
    e.add_argument("-o", "--output", required=True, help="file to write (its folder must exist)")
    e.add_argument(
        "--api-base",
        default=None,
        help="OpenAI-compatible endpoint serving local variants; may use {variant}, {target}, {id} "
        "(default: the live `slimserve serve` recorded in the catalog, else http://localhost:8000/v1)",
    )
    e.add_argument("--target", default=None, help="only this benchmark target (e.g. cpu)")
    e.add_argument("--rules", default=None, help="tier rules YAML (default: the stored tiers)")
    include_rejected_arg(e)
    catalog_arg(e)
    e.set_defaults(func=export_cmd)

    a = cs.add_parser(
        "add-external",
        help="declare an external (cloud) model with its list prices",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  slimserve catalog add-external gpt-4o --input-per-1m 2.50 --output-per-1m 10.00 \\\n"
        "      --quality mc:arc_easy=0.96 --source https://openai.com/api/pricing --date 2026-11-01",
    )
    a.add_argument("name", help="name routers use for it (also the litellm model unless --model)")
    a.add_argument("--input-per-1m", type=float, required=True, help="list price, USD per 1M input tokens")
    a.add_argument("--output-per-1m", type=float, required=True, help="list price, USD per 1M output tokens")
    a.add_argument(
        "--quality",
        action="append",
        default=None,
        help="declared quality METRIC=VALUE (top1, kld, ppl_delta, mc_mean, mc:TASK; a bare VALUE is top1); repeatable",
    )
    a.add_argument("--source", required=True, help="where the list price comes from (URL or document)")
    a.add_argument("--date", default=None, help="date of the list price, YYYY-MM-DD (default: today)")
    a.add_argument("--model", default=None, help="litellm model string, e.g. openai/gpt-4o (default: NAME)")
    a.add_argument("--context-length", type=int, default=None)
    a.add_argument("--api-base", default=None, help="endpoint when not the provider's default")
    catalog_arg(a)
    a.set_defaults(func=add_external_cmd)


def tier_cmd(args) -> int:
    from ..router import tier

    a = tier(**kwargs_of(args, "catalog", "rules", "from_recipe", "target", "include_rejected"))
    print(f"tiers ({a.source}; quality axis {a.metric}, blended cost {a.blend_input_share:g} input share):")
    for tr in a.tiers:
        floor = "" if tr.floor is None else f" floor {tr.floor}"
        lent = f" (borrowed from {tr.borrowed_from})" if tr.borrowed_from else ""
        print(f"  {tr.name:<10} leader {tr.leader + lent:<32} members {', '.join(tr.members)}{floor}")
    for tid, st in sorted(a.status.items()):
        gate = " (rejected by its gates, kept by --include-rejected)" if st.get("gate") == "rejected" else ""
        if st["status"] == "dominated":
            print(f"  dominated: {tid} (by {st['dominated_by']}){gate}")
        elif st["status"] in ("below_floor", "unrated"):
            print(f"  {st['status']}: {tid}{gate}")
        elif gate:
            print(f"  {st['status']}: {tid}{gate}")
    for n in a.notes:
        print(f"  note: {n}")
    rl = a.routellm
    if rl.get("weak") and rl.get("strong"):
        print(f"RouteLLM pair: weak {rl['weak']}, strong {rl['strong']}")
    else:
        print(f"RouteLLM pair: none: {rl.get('problem', 'no weak model')}. {rl.get('fix', '')}".rstrip(". "))
    return 0


def export_cmd(args) -> int:
    from ..router import export

    path = export(
        args.format, args.output, **kwargs_of(args, "catalog", "api_base", "target", "rules", "include_rejected")
    )
    print(f"wrote {path}")
    return 0


def add_external_cmd(args) -> int:
    from ..router import add_external

    row = add_external(
        args.name,
        **kwargs_of(
            args,
            "input_per_1m",
            "output_per_1m",
            "quality",
            "source",
            "date",
            "model",
            "context_length",
            "api_base",
            "catalog",
        ),
    )
    print(
        f"added external {row['name']}: ${row['input_per_1m']}/1M in, ${row['output_per_1m']}/1M out "
        f"(list price, {row['source']}, {row['date']}); quality {row['quality'] or 'not declared'}",
        file=sys.stdout,
    )
    return 0


def report_cmd(args) -> int:
    from ..report import report

    path = report(args.output, **kwargs_of(args, "catalog", "target", "rules", "include_rejected"))
    print(f"wrote {path}")
    return 0
