"""slimserve catalog list|show|remove (plus the router's tier/export/add-external)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from . import COMMANDS, catalog_arg


@COMMANDS.register("catalog")
def register(sub) -> None:
    p = sub.add_parser("catalog", help="inspect and manage the catalog of built variants")
    cs = p.add_subparsers(dest="catalog_command", metavar="SUBCOMMAND", required=True)
    ls = cs.add_parser(
        "list",
        help="table of variants (with benchmark results once measured)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="One row per variant. Columns that do not fit the terminal are hidden (name first, then tier, "
        "status, format, bits, size_mb, then the benchmark columns) and named in a footer; names are never cut. "
        "Width: $COLUMNS, else the terminal's; no limit when the output is a pipe or a file. "
        "tier: what the stored `slimserve catalog tier` gives the variant (`- (status)` when none); status: its gate "
        "verdict; label: the recipe's tier label.",
        epilog="examples:\n  slimserve catalog list\n  slimserve catalog list --wide\n"
        "  COLUMNS=200 slimserve catalog list\n  slimserve catalog list --json",
    )
    catalog_arg(ls)
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--wide", action="store_true", help="show every column, however wide the table gets")
    ls.set_defaults(func=list_cmd)
    sh = cs.add_parser(
        "show",
        help="a variant's manifest",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  slimserve catalog show smollm2-int4-g128 --json",
    )
    sh.add_argument("name")
    catalog_arg(sh)
    sh.add_argument("--json", action="store_true", help="print the manifest as JSON")
    sh.set_defaults(func=show_cmd)
    vf = cs.add_parser(
        "verify",
        help="hash every file of a variant (or of all) against its manifest",
        epilog="examples:\n  slimserve catalog verify\n  slimserve catalog verify smollm2-int4-g128",
    )
    vf.add_argument("name", nargs="?", default=None)
    catalog_arg(vf)
    vf.set_defaults(func=verify_cmd)
    rm = cs.add_parser("remove", help="delete a variant", epilog="example:\n  slimserve catalog remove smollm2-int8")
    rm.add_argument("name")
    catalog_arg(rm)
    rm.set_defaults(func=remove_cmd)
    try:
        from .router import register_catalog_commands
    except ImportError:
        return
    register_catalog_commands(cs)


def list_rows(catalog=None) -> list[dict]:
    """Rows of `catalog list`: build facts, the tier the stored `catalog tier` assignment gives the variant (None
    with a `tier_status` such as below_floor or rejected when it holds none), its gate status, the recipe's `label`,
    plus the latest benchmark summary where measured."""
    return list_view(catalog)[0]


def list_view(catalog=None) -> tuple[list[dict], str | None]:
    """(rows, footer line when no current tiering is stored)."""
    from ..catalog import Catalog

    cat = Catalog.open(catalog)
    extra, tiers, note = {}, {}, None
    try:
        from ..bench.store import summary_columns
    except ImportError:
        summary_columns = None
    if summary_columns is not None:
        extra = summary_columns(cat)
    try:
        from ..router.listing import tier_columns
    except ImportError:
        tier_columns = None
    if tier_columns is not None and cat.names():
        tiers, note = tier_columns(cat)
    rows = []
    for v in cat.variants():
        row = {
            "name": v.name,
            "tier": None,
            "tier_status": None,
            "status": v.status,
            "method": v.method,
            "format": v.format,
            "bits": round(v.bits, 2) if v.bits is not None else None,
            "size_mb": round(v.size_bytes / 1e6, 1) if v.size_bytes else None,
            "params": v.params,
            "label": v.tier,  # the recipe's label; tiers come from `catalog tier`
        }
        row.update(tiers.get(v.name, {}))
        row.update(extra.get(v.name, {}))
        rows.append(row)
    return rows, note


def table_row(row: dict) -> dict:
    """A JSON row as the table shows it: a variant without a tier shows `- (its status)` in the tier column."""
    out = {k: v for k, v in row.items() if k != "tier_status"}
    if out.get("tier") is None and row.get("tier_status"):
        out["tier"] = f"- ({row['tier_status']})"
    return out


def list_cmd(args) -> int:
    rows, note = list_view(args.catalog)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        if note:
            print(note, file=sys.stderr)
        return 0
    if not rows:
        print("catalog is empty: build one with `slimserve build RECIPE`")
        return 0
    from .table import output_width, print_table

    print_table([table_row(r) for r in rows], wide=args.wide)
    if note:
        width = None if args.wide else output_width()
        print(textwrap.fill(note, width) if width else note)  # one line wherever it fits
    return 0


def show_cmd(args) -> int:
    from ..catalog import Catalog

    v = Catalog.open(args.catalog).get(args.name)
    if args.json:
        json.dump(v.manifest, sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    m = v.manifest
    print(f"{m['name']}  tier={m['tier']}  format={m['format']}  method={m['method']}")
    print(f"path: {v.path}")
    print(f"params: {m['params']:,}  size: {m['size_bytes'] / 1e6:.1f} MB  bits/weight: {m['bits_per_weight']:.2f}")
    print(f"base: {m['base']['source']} ({m['base']['kind']}, sha256 {m['base']['source_hash'][:16]})")
    print(f"recipe: {m['recipe']['file']} ({m['recipe']['name']}, {m['recipe']['hash'][:16]})")
    for s in m["steps"]:
        print(f"step: {s['kind']}: {s['summary']}  ({s['seconds']}s)")
    skipped = m.get("skipped_layers") or {}
    for name, why in skipped.items() if isinstance(skipped, dict) else []:
        print(f"skipped: {name}: {why}")
    asked = (m.get("base") or {}).get("trust_remote_code", False)
    print(f"remote code: never taken from the artifact (the recipe asked trust_remote_code: {str(asked).lower()})")
    return 0


def verify_cmd(args) -> int:
    """Full sha256 of every listed file; exit 2 naming the first variant and file that do not match."""
    from ..artifact.verify import verify_variant
    from ..catalog import Catalog

    cat = Catalog.open(args.catalog, create=False)
    rows = [cat.get(args.name)] if args.name else cat.variants()
    for v in rows:
        verify_variant(v.path, v.manifest, full=True)
        print(f"ok  {v.name}  {len(v.manifest.get('files') or {})} file(s) match their sha256")
    return 0


def remove_cmd(args) -> int:
    from ..catalog import Catalog

    Catalog.open(args.catalog, create=False).remove(args.name)
    print(f"removed {args.name}")
    return 0
