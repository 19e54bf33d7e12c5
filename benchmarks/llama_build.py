"""The installed llama.cpp build on this CPU: speed and agreement with and without extra buffers.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/llama_build.py [--tokens 64] [--json OUT]

For the llama-cpp-python installed in this interpreter, on the embedded Gemma 3 270M Q4_K_M with
2 threads, it measures (a) prompt processing and (b) generation in tokens/s, each with llama.cpp's
extra buffer types on (weight repacking; AMX where the build has it) and off -- the two settings
labmake's loader can choose -- and checks that both give the same greedy text. It prints the
build's features (``llama_print_system_info``) and ggml's build id, and this CPU's AMX flags, so
runs of several builds (native, portable; see the Makefile's LLAMA_CMAKE_ARGS) can be compared.
Each setting runs in a fresh process, so one crash does not hide the others.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PROMPT = (
    "The water cycle moves water between the oceans, the air and the land. Heat from the sun "
    "evaporates water from the sea; the vapour rises, cools and condenses into clouds. "
) * 4 + "Q: What happens to water vapour as it rises?\nA:"


def one(extra_buffers: bool, tokens: int) -> dict[str, object]:
    import llama_cpp

    from labmake.core import llama as runtime
    from labmake.core.models import embedded_gguf

    runtime.install_policy()
    original = llama_cpp.llama_cpp.llama_model_default_params

    def forced() -> object:
        params = original()
        params.use_extra_bufts = extra_buffers
        return params

    llama_cpp.llama_cpp.llama_model_default_params = forced
    llm = runtime.open_llama(embedded_gguf(), n_ctx=1024, n_threads=2, seed=0)
    prompt = llm.tokenize(PROMPT.encode("utf-8"))
    best_prompt = best_gen = 0.0
    text = ""
    for _ in range(3):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        best_prompt = max(best_prompt, len(prompt) / (t1 - t0))
        llm.reset()
        t2 = time.perf_counter()
        out = llm.create_completion(PROMPT, max_tokens=tokens, temperature=0.0)
        t3 = time.perf_counter()
        n = int(out["usage"]["completion_tokens"])
        # Generation rate: the completion's time less its prompt's, measured just above.
        best_gen = max(best_gen, n / max(t3 - t2 - len(prompt) / best_prompt, 1e-6))
        text = out["choices"][0]["text"]
    return {
        "extra_buffers": extra_buffers,
        "prompt_tokens_per_s": round(best_prompt, 1),
        "generation_tokens_per_s": round(best_gen, 1),
        "text": text,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--one", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one == "on", args.tokens)))
        return 0

    from importlib.metadata import version

    from labmake.core import llama as runtime

    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", cpu)
    report: dict[str, object] = {
        "llama_cpp_python": version("llama-cpp-python"),
        "build": runtime.build_id(),
        "features": runtime.system_info().strip(" |"),
        "cpu": model.group(1) if model else "unknown",
        "cpu_amx": sorted(set(re.findall(r"\bamx\w*", cpu))),
        "policy_extra_buffers": runtime.extra_buffers_allowed(runtime.system_info()),
        "runs": [],
    }
    for setting in ("on", "off"):
        proc = subprocess.run(
            [sys.executable, __file__, "--one", setting, "--tokens", str(args.tokens)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            run: dict[str, object] = {
                "extra_buffers": setting == "on",
                "failed": f"exit {proc.returncode}",
            }
        else:
            run = json.loads(proc.stdout.strip().splitlines()[-1])
        report["runs"].append(run)  # type: ignore[union-attr]
    texts = {r.get("text") for r in report["runs"] if "text" in r}  # type: ignore[union-attr]
    report["same_text"] = len(texts) == 1
    for key in ("llama_cpp_python", "build", "features", "cpu", "cpu_amx"):
        print(f"{key}: {report[key]}")
    for r in report["runs"]:  # type: ignore[union-attr]
        if "failed" in r:
            print(f"  extra buffers {'on ' if r['extra_buffers'] else 'off'}: {r['failed']}")
        else:
            print(
                f"  extra buffers {'on ' if r['extra_buffers'] else 'off'}: prompt "
                f"{r['prompt_tokens_per_s']} tok/s, generation {r['generation_tokens_per_s']} tok/s"
            )
    print(f"same greedy text with and without: {report['same_text']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
