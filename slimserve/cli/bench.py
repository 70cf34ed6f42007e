"""slimserve bench: measure speed, quality and cost of catalog variants on a target."""

from __future__ import annotations

import argparse

from . import COMMANDS, config_args, config_of

EPILOG = """examples:
  slimserve bench                                       # every variant on its own target (cpu / onnx-cpu), quick
  slimserve bench --target cpu                          # the PyTorch variants only (minutes on a quiet 2-core box)
  slimserve bench --target cpu --full                   # the rigour of published tables (over an hour for 4 variants)
  slimserve bench smollm2-int4-g128 --limit 4           # a quick look: one variant (+ the reference, for KLD)
  slimserve bench smollm2-int4-g128 --target cpu --json
  slimserve bench --target cuda --price-per-hour 1.006  # on a GPU machine (e.g. an A10G at on-demand price)
  slimserve bench --list-targets                        # which targets run here, and why not
  slimserve bench --list-runs                           # stored runs, newest first
  slimserve bench --compare                             # do the two newest runs agree within their spread?
"""


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


@COMMANDS.register("bench")
def register(sub) -> None:
    from ..bench.config import BenchConfig

    p = sub.add_parser(
        "bench",
        help="benchmark variants on a target: latency, memory, quality and $ per 1M tokens",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    fields = BenchConfig.model_fields
    p.add_argument("variants", nargs="*", metavar="VARIANT", help=fields["variants"].description)
    prof = p.add_mutually_exclusive_group()
    prof.add_argument("--profile", default=fields["profile"].default, help=fields["profile"].description)
    prof.add_argument("--full", dest="profile", action="store_const", const="full", help="same as --profile full")
    config_args(p, BenchConfig, types={"batches": _ints, "prompt_lens": _ints}, skip=("variants", "profile"))
    p.add_argument("--list-targets", action="store_true", help="list targets and whether they run here")
    p.add_argument("--list-runs", action="store_true", help="list the runs stored in the catalog")
    p.add_argument(
        "--compare",
        nargs="*",
        metavar="RUN",
        default=None,
        help="compare two stored runs (default: the two newest) metric by metric against their printed spread",
    )
    p.set_defaults(func=bench_cmd)


def bench_cmd(args: argparse.Namespace) -> int:
    if args.list_targets:
        from ..bench.targets import status_text, target_status

        for name, why in target_status().items():
            print(f"{name:16s} {status_text(name, why)}")
        return 0
    if args.list_runs:
        from ..bench.store import runs
        from ..catalog import Catalog

        for r in runs(Catalog.open(args.catalog, create=False)):
            print(f"{r['run_id']}  {r['created']}  {r['target']:12s}  {r['command']}")
        return 0
    if args.compare is not None:
        return _compare(args)
    from ..bench import api
    from ..bench.config import BenchConfig

    config = config_of(BenchConfig, args)  # every flag checked before the bench module (and torch) loads
    api.bench(config=config)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ..bench.agreement import compare_runs, explain, to_markdown
    from ..errors import UserError

    if len(args.compare) not in (0, 2):
        raise UserError(f"--compare takes two run ids or none, got {len(args.compare)}", field="--compare")
    a, b, rows = compare_runs(*args.compare, catalog=args.catalog)
    print(to_markdown(rows, a, b, explain(a, b, catalog=args.catalog)))
    return 0
