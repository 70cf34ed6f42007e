"""slimserve bench: measure speed, quality and cost of catalog variants on a target."""

from __future__ import annotations

import argparse

from . import catalog_arg, kwargs_of

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
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return vals


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark variants on a target: latency, memory, quality and $ per 1M tokens",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument("variants", nargs="*", metavar="VARIANT", help="variants to run (default: every variant)")
    p.add_argument(
        "--target",
        default="auto",
        help="where to run: cpu, cuda, onnx-cpu, neuron-static, a comma list, or auto (default): each variant on the "
        "first target that runs its artifact here (PyTorch formats on cpu, ONNX graphs on onnx-cpu)",
    )
    catalog_arg(p)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    p.add_argument("--hardware", default=None, help="price-table key of this machine (default: local-cpu/local-gpu)")
    p.add_argument("--price-per-hour", type=float, default=None, help="hourly price in USD; overrides the table")
    p.add_argument("--prices", default=None, help="a price table YAML replacing the shipped one")
    p.add_argument("--eval-text", default=None, help="text file for perplexity (default: Pride and Prejudice)")
    p.add_argument("--eval-mc", default=None, help="JSONL of {question, choices, answer} instead of ARC-Easy/HellaSwag")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="at most N perplexity windows and N questions per task (quick 16 and 10, full 32 and 50)",
    )
    p.add_argument("--slo-ms", type=float, default=100.0, help="p99 inter-token latency SLO for the output price")
    prof = p.add_mutually_exclusive_group()
    prof.add_argument(
        "--profile",
        default="quick",
        help="how much to measure: quick (default, a few minutes: 1 round, short scenarios, 16 perplexity windows) "
        "or full (published-table rigour: 5 rounds, batches 1,4,16, 32 windows; over an hour for 4 variants on "
        "2 cores); the flags below override single values",
    )
    prof.add_argument("--full", dest="profile", action="store_const", const="full", help="same as --profile full")
    p.add_argument(
        "--rounds", type=int, default=None, help="measurement rounds, interleaved across variants (quick 1, full 5)"
    )
    p.add_argument(
        "--iters", type=int, default=None, help="minimum timed iterations per scenario and round (default 1)"
    )
    p.add_argument(
        "--min-seconds", type=float, default=None, help="minimum seconds per scenario and round (quick 0.5, full 1)"
    )
    p.add_argument(
        "--new-tokens", type=int, default=None, help="tokens decoded in the decode scenario (quick 32, full 128)"
    )
    p.add_argument("--batches", type=_ints, default=None, help="batch sizes, e.g. 1,4,16 (quick 1,8; full 1,4,16)")
    p.add_argument(
        "--prompt-lens", type=_ints, default=None, help="prefill prompt lengths, e.g. 128,512 (quick 128; full 128,512)"
    )
    p.add_argument("--no-speed", dest="speed", action="store_false", help="skip the speed scenarios (and cost)")
    p.add_argument("--no-quality", dest="quality", action="store_false", help="skip the quality scenarios")
    p.add_argument("--loop", default=None, help="PyTorch decode loop: dynamic-kv (default), static-kv, generate")
    p.add_argument("--out", default=None, help="report folder (default: <catalog>/bench)")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.add_argument("--list-targets", action="store_true", help="list targets and whether they run here")
    p.add_argument("--list-runs", action="store_true", help="list the runs stored in the catalog")
    p.add_argument(
        "--compare",
        nargs="*",
        metavar="RUN",
        default=None,
        help="compare two stored runs (default: the two newest) metric by metric against their printed spread",
    )
    p.add_argument(
        "--no-verify", dest="verify", action="store_false", help="skip the sha256 check of the variants' files"
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
    from ..bench.api import bench

    bench(
        args.variants or None,
        **kwargs_of(
            args,
            "target",
            "catalog",
            "threads",
            "hardware",
            "price_per_hour",
            "prices",
            "eval_text",
            "eval_mc",
            "limit",
            "slo_ms",
            "speed",
            "profile",
            "rounds",
            "quality",
            "iters",
            "min_seconds",
            "new_tokens",
            "batches",
            "prompt_lens",
            "loop",
            "out",
            "json",
            "verify",
        ),
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ..bench.compare import compare_runs, explain, to_markdown
    from ..errors import UserError

    if len(args.compare) not in (0, 2):
        raise UserError(f"--compare takes two run ids or none, got {len(args.compare)}", field="--compare")
    a, b, rows = compare_runs(*args.compare, catalog=args.catalog)
    print(to_markdown(rows, a, b, explain(a, b, catalog=args.catalog)))
    return 0
