"""Start vLLM's engine on each case's checkpoint up to its KV-cache sizing, then send one request, and keep the log.

Run by the vLLM environment's python (tests/test_families_live.py does). Each case is the engine `vllm serve`
builds: vLLM's own serve argument parser, AsyncEngineArgs.from_cli_args and the OpenAI server's usage context
(so the same defaults: max_num_batched_tokens, max_num_seqs, prefix caching), built in-process
(VLLM_ENABLE_V1_MULTIPROCESSING=0: the engine core and the one CPU worker run in the case's process instead of two
spawned interpreters that import vLLM again). The KV cache is sized by the same code either way
(vllm/v1/core/kv_cache_utils.py). Cases run one at a time, each in a child forked from this interpreter, which
imported vLLM once; a child still running at its timeout is killed with its process group.

stdin: JSON list of {"name", "argv", "env", "log", "timeout", "generate"}; stdout: JSON {name: {"rc", "timed_out",
"seconds", "generated", "error"}}. argv is vLLM's serve flags with --model DIR.
"""

import importlib
import json
import os
import signal
import sys
import time
import traceback

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
PRELOAD = [
    "vllm.engine.arg_utils",
    "vllm.entrypoints.launchers.cli_args",
    "vllm.v1.engine.llm_engine",
    "vllm.v1.engine.core",
    "vllm.v1.executor.uniproc_executor",
    "vllm.v1.worker.cpu_worker",
    "vllm.v1.worker.cpu_model_runner",
    "vllm.sampling_params",
    "transformers",
]


def run_child(case: dict, result_path: str) -> None:
    os.setsid()
    fd = os.open(case["log"], os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(case.get("env", {}))
    out = {"generated": None, "error": None}
    code = 0
    try:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
        from vllm.sampling_params import SamplingParams
        from vllm.usage.usage_lib import UsageContext
        from vllm.utils.argparse_utils import FlexibleArgumentParser
        from vllm.v1.engine.llm_engine import LLMEngine

        args = make_arg_parser(FlexibleArgumentParser()).parse_args(case["argv"])
        engine = LLMEngine.from_engine_args(AsyncEngineArgs.from_cli_args(args), usage_context=UsageContext.OPENAI_API_SERVER)
        if case.get("generate"):
            try:
                engine.add_request(
                    "probe", {"prompt_token_ids": [11, 12, 13, 14, 15]}, SamplingParams(max_tokens=2, temperature=0.0)
                )
                tokens = []
                while engine.has_unfinished_requests():
                    for o in engine.step():
                        tokens = list(o.outputs[0].token_ids)
                out["generated"] = len(tokens)
            except Exception as exc:  # noqa: BLE001  the request's failure is the finding
                traceback.print_exc()
                out["generated"], out["error"] = 0, f"{type(exc).__name__}: {exc}"[:500]
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # noqa: BLE001  what an uncaught exception would print
        traceback.print_exc()
        out["error"] = f"{type(exc).__name__}: {exc}"[:500]
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    with open(result_path, "w") as fh:
        json.dump(out, fh)
    os._exit(code)


def main() -> None:
    cases = json.load(sys.stdin)
    for module in PRELOAD:  # the slow imports, done once
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    results = {}
    for case in cases:
        open(case["log"], "w").close()
        result_path = case["log"] + ".result.json"
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            run_child(case, result_path)
        deadline = start + case.get("timeout", 300)
        timed_out = False
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rc = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                timed_out, rc = True, None
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.1)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            with open(result_path) as fh:
                extra = json.load(fh)
        except (OSError, ValueError):
            extra = {"generated": None, "error": None}
        results[case["name"]] = {"rc": rc, "timed_out": timed_out, "seconds": round(time.monotonic() - start, 1), **extra}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
