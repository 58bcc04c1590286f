"""What `import inheritune_hf` and `inheritune --help` cost, beside `import torch, transformers`, in fresh interpreters.

    python benchmarks/bench_import.py [--runs 5]

Each statement runs in a new Python process (so nothing is cached in `sys.modules`), the runs of the statements
interleaved so that a busy machine slows them alike; the table gives the median wall time of each and its ratio
to `import torch, transformers`. Goals (issue 24): `import inheritune_hf` at most 1.2x `import torch,
transformers` (the package loads its submodules on first use), and `inheritune --help` (the list of subcommands)
under 1 s. The last row is for reading only: the first use of a step (`analyze_attention`) pays for its imports.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPORT_GOAL = 1.2
HELP_GOAL_S = 1.0

BASELINE = "import torch, transformers"
STATEMENTS = {
    "import torch, transformers": BASELINE,
    "import inheritune_hf": "import inheritune_hf",
    "inheritune --help": (
        "import contextlib, io\n"
        "from inheritune_hf.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])"
    ),
    "first use: inheritune_hf.analyze_attention": "import inheritune_hf; inheritune_hf.analyze_attention",
}


def seconds(statement: str) -> float:
    """Wall time of one fresh interpreter running `statement`."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per statement (median reported)")
    args = parser.parse_args()
    empty = statistics.median(seconds("pass") for _ in range(args.runs))
    times: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    for _ in range(args.runs):
        for name, statement in STATEMENTS.items():
            times[name].append(seconds(statement) - empty)
    median = {name: statistics.median(values) for name, values in times.items()}
    base = median["import torch, transformers"]
    print(f"median of {args.runs} fresh interpreters each, less the interpreter's own start ({empty:.3f} s)")
    print(f"{'statement':<45} {'seconds':>8} {'x torch+transformers':>21}")
    for name, value in median.items():
        print(f"{name:<45} {value:>8.3f} {value / base:>21.2f}")
    ratio, help_s = median["import inheritune_hf"] / base, median["inheritune --help"]
    print(
        f"import inheritune_hf: {ratio:.2f}x (goal <= {IMPORT_GOAL}x): {'met' if ratio <= IMPORT_GOAL else 'NOT met'}"
    )
    print(
        f"inheritune --help: {help_s:.2f} s (goal < {HELP_GOAL_S} s): {'met' if help_s < HELP_GOAL_S else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
