"""Start `vllm serve` once per case, each with a mistake, and keep each start's full log.

Run by the vLLM environment's python (tests/test_diagnose_live.py does). It imports vLLM's CLI once, then runs
each case in a child forked from that interpreter: the child is vLLM's own `vllm serve` entry point
(vllm.entrypoints.cli.main.main) with the case's argv and environment, stdout and stderr going to the case's
log; an exception that escapes is printed as the interpreter prints it and exits 1, argparse exits 2 itself.
Forking saves the ~30 s import for every case; what the child runs and prints is the real start-up.
One case at a time; a case still running at its timeout is killed with its process group (engine, workers).

stdin: JSON list of {"name", "argv", "env", "log", "timeout"}; stdout: JSON {name: {"rc", "timed_out"}}.
"""

import importlib
import json
import os
import signal
import sys
import time
import traceback


# What vllm.entrypoints.cli.main.main() imports lazily, and what a start imports before it fails.
PRELOAD = [
    "vllm.entrypoints.cli.main",
    "vllm.entrypoints.cli.openai",
    "vllm.entrypoints.cli.serve",
    "vllm.entrypoints.cli.launch",
    "vllm.entrypoints.cli.benchmark.main",
    "vllm.entrypoints.cli.collect_env",
    "vllm.entrypoints.cli.download_kernels",
    "vllm.entrypoints.cli.preload",
    "vllm.entrypoints.cli.run_batch",
    "vllm.entrypoints.cli.snapshot",
    "vllm.engine.arg_utils",
    "vllm.config",
    "vllm.tool_parsers",
    "vllm.reasoning",
    "vllm.transformers_utils.config",
    "transformers",
]


def run_child(case: dict) -> None:
    os.setsid()
    fd = os.open(case["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(case.get("env", {}))
    sys.argv = ["vllm", *case["argv"]]
    code = 0
    try:
        from vllm.entrypoints.cli.main import main

        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001  what an uncaught exception would print
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def wait(pid: int, timeout: float) -> dict:
    start = time.monotonic()
    deadline = start + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            result = {"rc": os.waitstatus_to_exitcode(status), "timed_out": False}
            break
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            result = {"rc": None, "timed_out": True}
            break
        time.sleep(0.1)
    try:  # the engine core and workers a child started go with it
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def main() -> None:
    cases = json.load(sys.stdin)
    for module in PRELOAD:  # the slow imports, done once (main() imports these lazily)
        try:
            importlib.import_module(module)
        except ImportError:
            pass

    results = {}
    for case in cases:
        pid = os.fork()
        if pid == 0:
            run_child(case)
        results[case["name"]] = wait(pid, case.get("timeout", 300))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
