#!/usr/bin/env python
"""Are repeat runs repeatable? Run the same `slimserve bench` twice, each in its own process, and compare.

    python bench/repeat_check.py --catalog /tmp/demo_cat smollm2-fp32 smollm2-int8 smollm2-int4-g128 smollm2-int4-g32

Each run is a plain `slimserve bench ... --no-quality --profile full` subprocess (fresh process, fresh memory layout;
`--profile quick` for a fast check), stored in the catalog like any run. Then every speed metric the report prints with a spread is compared: it agrees when each run's
median lies within the other run's printed p10-p90 band. The table, the hardware and both commands go to
bench/results/<out>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from slimserve.bench.agreement import compare_runs, explain, to_markdown
from slimserve.bench.report import fingerprint_lines
from slimserve.bench.store import run_records, runs
from slimserve.catalog import Catalog

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="*", help="variants (default: every variant in the catalog)")
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--target", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", default="full", help="bench profile of both runs (default full: published rigour)")
    ap.add_argument("--rounds", type=int, default=None, help="passed to slimserve bench (default: the profile's)")
    ap.add_argument("--pause", type=float, default=30.0, help="seconds between the two runs")
    ap.add_argument("--out", default="repeat-check", help="result file stem under bench/results/")
    args = ap.parse_args()

    cmd = [sys.executable, "-m", "slimserve", "bench", *args.variants, "--target", args.target]
    cmd += ["--catalog", args.catalog, "--threads", str(args.threads), "--no-quality", "--profile", args.profile]
    if args.rounds:
        cmd += ["--rounds", str(args.rounds)]
    cat = Catalog.open(args.catalog, create=False)
    run_ids = []
    for i in range(2):
        if i:
            time.sleep(args.pause)
        print(f"run {i + 1}/2: {shlex.join(cmd)}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        run_ids.append(next(iter(runs(cat)))["run_id"])  # the newest stored run is the one just made
    a, b, rows = compare_runs(*run_ids, catalog=args.catalog)
    fp = run_records(cat, a)[0].fingerprint
    md = "\n".join(
        [
            f"# Repeat check: two `slimserve bench` runs on target {args.target}",
            "",
            f"- command: `python {shlex.join(sys.argv)}`",
            f"- each run: `{shlex.join(['slimserve', *cmd[3:]])}`, {args.pause:g} s apart, separate processes",
            *fingerprint_lines(fp),
            "",
            to_markdown(rows, a, b, explain(a, b, catalog=args.catalog)),
            "",
        ]
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text(md)
    data = [{**asdict(r), "delta": r.delta, "agree": r.within} for r in rows]
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"runs": [a, b], "rows": data}, indent=2) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
