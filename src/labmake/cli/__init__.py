"""The ``labmake`` command: validate, build, diff, plan, chat, serve.

Heavy libraries (torch, transformers, llama_cpp, snakemake) are imported inside the command
that needs them, so ``labmake validate`` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from labmake import __version__
from labmake.core import paths

EXIT_USAGE = 2


def _validate(args: argparse.Namespace) -> int:
    from labmake.taxonomy.check import run_validate

    return run_validate(
        [Path(p) for p in args.paths],
        ilab_strict=args.ilab_strict,
        fmt=args.format,
        params_path=Path(args.params) if args.params else None,
        strict_limits=args.strict_limits,
    )


def _build(args: argparse.Namespace) -> int:
    from labmake.core.config import ConfigError, load
    from labmake.taxonomy.check import run_validate

    try:
        cfg = load(args.params)
    except ConfigError as exc:
        print(f"labmake build: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    status = _check_build_toolchain(args.allow_toolchain_mismatch)
    if status != 0:
        return status
    # A broken qna.yaml is reported here, file by file, before any job starts.
    status = run_validate(
        [Path(cfg.taxonomy.root)], ilab_strict=False, fmt="text", params_path=Path(args.params)
    )
    if status != 0:
        print("labmake build: fix the taxonomy errors above, then build again.", file=sys.stderr)
        return status
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    command = [
        snakemake,
        "--profile",
        args.profile,
        "--configfile",
        args.params,
        *args.snakemake_args,
    ]
    print("+ " + " ".join(command), file=sys.stderr)
    result = subprocess.run(command, check=False)
    if result.returncode == 0 and "-n" not in args.snakemake_args:
        model = paths.gguf(cfg.export.quantizations[0])
        print(
            f"\nlabmake: built {model}\n  evaluation: {paths.EVAL_REPORT}\n"
            f"  build report: {paths.REPORT_HTML}\n"
            f"  chat with it: labmake chat {model}"
        )
    return result.returncode


def _check_build_toolchain(allow_mismatch: bool) -> int:
    """A build from source runs under the project's locked toolchain, or says it does not."""
    from labmake.core import toolchain

    lock = toolchain.Lock.find(Path.cwd())
    if lock is None:
        return 0
    try:
        differences = lock.differences()
    except toolchain.ToolchainError as exc:
        print(f"labmake build: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not differences:
        return 0
    message = toolchain.mismatch_message(differences, toolchain.LOCK)
    if not allow_mismatch:
        print(
            f"labmake build: error: {message}\nor pass --allow-toolchain-mismatch to build "
            "anyway (the bytes may then differ from a build under the lock)",
            file=sys.stderr,
        )
        return 1
    print(
        f"labmake build: warning: {message}\nbuilding anyway (--allow-toolchain-mismatch): "
        "the bytes may differ from a build under the lock",
        file=sys.stderr,
    )
    return 0


def _chat(args: argparse.Namespace) -> int:
    from labmake.cli.chat import chat

    return chat(
        Path(args.model),
        n_ctx=args.n_ctx,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        system=args.system,
    )


def _serve(args: argparse.Namespace) -> int:
    model = Path(args.model)
    if not model.is_file():
        print(f"labmake serve: error: {model}: no such GGUF file", file=sys.stderr)
        return EXIT_USAGE
    command = [
        sys.executable,
        "-m",
        "labmake.core.llama",
        "--model",
        str(model),
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    print("+ " + " ".join(command), file=sys.stderr)
    return subprocess.run(command, check=False).returncode


def _diff(args: argparse.Namespace) -> int:
    from labmake.cli.diff import run_diff

    return run_diff(
        Path(args.params),
        base=args.base,
        taxonomy=Path(args.taxonomy) if args.taxonomy else None,
        build_dir=Path(args.build_dir),
        fmt=args.format,
    )


def _plan(args: argparse.Namespace) -> int:
    from labmake.cli.diff import run_plan

    return run_plan(
        Path(args.params),
        taxonomy=Path(args.taxonomy) if args.taxonomy else None,
        build_dir=Path(args.build_dir),
        fmt=args.format,
    )


def _toolchain(args: argparse.Namespace) -> int:
    from labmake.core import toolchain

    root = Path(args.root)
    lock = toolchain.Lock.find(root)
    if args.action == "show":
        keys = toolchain.provenance(root)
        width = max(len(k) for k in keys)
        for key, value in keys.items():
            print(f"{key:<{width}}  {value}")
        return 0
    if lock is None:
        print(f"labmake toolchain: error: no {toolchain.LOCK} in {root}", file=sys.stderr)
        return EXIT_USAGE
    try:
        differences = lock.differences()
    except toolchain.ToolchainError as exc:
        print(f"labmake toolchain: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if differences:
        message = toolchain.mismatch_message(differences, str(lock.path))
        print(f"labmake toolchain: error: {message}", file=sys.stderr)
        return 1
    print(f"labmake toolchain: the installed packages are exactly {lock.path}")
    return 0


def _release(args: argparse.Namespace) -> int:
    from labmake.cli.release import run_release

    return run_release(args.tag)


def _reproduce(args: argparse.Namespace) -> int:
    from labmake.cli.release import run_reproduce

    return run_reproduce(
        args.tag, profile=args.profile, allow_toolchain_mismatch=args.allow_toolchain_mismatch
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="labmake",
        description="Compile a taxonomy of seed examples into a fine-tuned, quantized GGUF model.",
    )
    top.add_argument("--version", action="version", version=f"labmake {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check qna.yaml files (InstructLab-compatible)")
    p.add_argument(
        "paths",
        nargs="*",
        help="taxonomy roots or qna.yaml files (default: params.yaml's taxonomy.root)",
    )
    p.add_argument(
        "--ilab-strict",
        action="store_true",
        help="accept exactly what `ilab taxonomy diff` accepts (yamllint warnings are errors; labmake's extra limits off)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--strict-limits",
        action="store_true",
        help="make labmake's own limits (word counts, duplicates, context window) errors, not warnings",
    )
    p.add_argument(
        "--params", default=None, help="params.yaml to read the teacher's context size from"
    )
    p.set_defaults(func=_validate)

    p = sub.add_parser(
        "build", help="run the build with snakemake (extra arguments go to snakemake)"
    )
    p.add_argument(
        "--profile",
        default="profiles/local",
        help="snakemake profile (profiles/local or profiles/slurm)",
    )
    p.add_argument("--params", default="params.yaml")
    p.add_argument(
        "--allow-toolchain-mismatch",
        action="store_true",
        help="build even when the installed packages differ from requirements.lock",
    )
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="passed to snakemake, e.g. -n")
    p.set_defaults(func=_build)

    p = sub.add_parser(
        "diff", help="leaves added, changed or removed against a git ref or the last build"
    )
    p.add_argument(
        "--base",
        default=None,
        help="git ref to compare with (default: the merge base with the upstream branch; "
        "the last build when there is none)",
    )
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--taxonomy", default=None, help="taxonomy root (default: params.yaml's)")
    p.add_argument("--build-dir", default=paths.BUILD, help="the last build's folder")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_diff)

    p = sub.add_parser(
        "plan", help="what a build would redo per leaf, with teacher requests and tokens"
    )
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--taxonomy", default=None, help="taxonomy root (default: params.yaml's)")
    p.add_argument("--build-dir", default=paths.BUILD, help="the last build's folder")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_plan)

    p = sub.add_parser(
        "release",
        help="build with dvc repro, commit dvc.lock, push the artifacts to the DVC remote, tag",
    )
    p.add_argument("tag", help="the git tag to create, e.g. v1")
    p.set_defaults(func=_release)

    p = sub.add_parser(
        "reproduce",
        help="check out a released tag, pull and verify its artifacts, mark them built",
    )
    p.add_argument("tag", help="a tag made by labmake release")
    p.add_argument("--profile", default="profiles/local", help="snakemake profile to mark with")
    p.add_argument(
        "--allow-toolchain-mismatch",
        action="store_true",
        help="go on when the installed packages differ from the tag's requirements.lock",
    )
    p.set_defaults(func=_reproduce)

    p = sub.add_parser(
        "toolchain", help="check the installed packages against requirements.lock, or show them"
    )
    p.add_argument("action", choices=("check", "show"))
    p.add_argument("--root", default=".", help="the project folder holding the lock")
    p.set_defaults(func=_toolchain)

    p = sub.add_parser("chat", help="talk to a GGUF model in the terminal")
    p.add_argument("model", help="a .gguf file, e.g. build/model/model.Q4_K_M.gguf")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--system", default=None, help="a system message to start the conversation with")
    p.set_defaults(func=_chat)

    p = sub.add_parser("serve", help="serve a GGUF model with llama.cpp's OpenAI-compatible server")
    p.add_argument("model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=_serve)
    return top


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("\nlabmake: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
