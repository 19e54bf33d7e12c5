"""Data-parallel training: one process per GPU (or several CPU processes) for one phase.

The train rule runs in one Python process. When ``train.processes`` asks for more than one
(``auto``: one per CUDA GPU this job can see, such as the GPUs a SLURM job was given), that
process starts N workers of this module on this node, with the environment a
``torchrun --standalone`` launch gives (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); each
worker runs :func:`labmake.training.phase.run_phase`, which shares every optimizer step between
them (DDP through accelerate: NCCL on GPUs, gloo on CPUs) and lets the first one write.

The workers are plain subprocesses rather than torchrun's or torch.multiprocessing's: torchrun
answers a worker's clean error message with a wall of its own tracebacks, and the ``spawn``
start method re-executes the parent's main module, which for a Snakemake ``script:`` is the
rule's script itself. When one worker fails the others are stopped (they would wait forever
in the next collective), and the phase's resumable state, written by the first worker at each
checkpoint, is kept for the re-run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from labmake.core.config import PhaseConfig, section

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often the launcher looks at its workers


class LaunchError(RuntimeError):
    """A training worker failed; its own message is in the log above this one."""


def resolve_processes(setting: str | int) -> int:
    """How many training processes ``train.processes`` means on this machine."""
    if setting == "auto":
        import torch

        return max(torch.cuda.device_count(), 1) if torch.cuda.is_available() else 1
    n = int(setting)
    if n < 1:
        raise ValueError(f"train.processes is {setting!r}; use auto or a number >= 1")
    return n


def in_launch() -> bool:
    """True inside a worker of a distributed launch (this one's, torchrun's, accelerate's)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spec(phase: PhaseConfig, kwargs: dict[str, Any], log_file: str | None, threads: int) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return json.dumps(
        {
            "phase": dataclasses.asdict(phase),
            "kwargs": {k: plain(v) for k, v in kwargs.items()},
            "log_file": log_file,
            "threads": threads,
        },
        sort_keys=True,
    )


def launch(
    processes: int,
    phase: PhaseConfig,
    kwargs: dict[str, Any],
    *,
    log_file: str | None = None,
    threads: int = 1,
) -> None:
    """Run :func:`labmake.training.phase.run_phase` (``phase``, ``**kwargs``) in ``processes``
    workers on this node and wait for them; raise :class:`LaunchError` if any of them fails."""
    per_worker = max(threads // processes, 1)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="labmake-train-") as tmp:
        spec = Path(tmp) / "phase.json"
        spec.write_text(_spec(phase, kwargs, log_file, per_worker), encoding="utf-8")
        log.info(
            "phase %s: launching %d training processes (%d thread(s) each)",
            phase.name,
            processes,
            per_worker,
        )
        workers = []
        for rank in range(processes):
            env = {
                **os.environ,
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "WORLD_SIZE": str(processes),
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": str(processes),
                "OMP_NUM_THREADS": str(per_worker),
            }
            cmd = [sys.executable, "-m", "labmake.training.launch", str(spec)]
            workers.append(subprocess.Popen(cmd, env=env))
        failed = _wait(workers)
    if failed is not None:
        rank, code = failed
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        raise LaunchError(
            f"phase '{phase.name}': training process {rank} of {processes} {how}; its message "
            f"is above{f' and in {log_file}' if log_file else ''}. The last checkpoint is kept: "
            "run the build again to resume from it"
        )


def _wait(workers: list[subprocess.Popen[bytes]]) -> tuple[int, int] | None:
    """Wait for every worker; at the first failure stop the rest. (rank, code) of the failure."""
    try:
        while True:
            codes = [w.poll() for w in workers]
            bad = next(((r, c) for r, c in enumerate(codes) if c not in (None, 0)), None)
            if bad is not None:
                _stop(workers)
                return bad
            if all(c == 0 for c in codes):
                return None
            time.sleep(POLL_S)
    except BaseException:  # the launcher itself interrupted: leave no orphan behind
        _stop(workers)
        raise


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def worker(spec_path: Path) -> None:
    """One worker: the phase from the launcher's spec, logging to the rule's log (first
    worker) or to stderr for warnings only (the others: the same steps, said once)."""
    from labmake.core import logs
    from labmake.training.phase import run_phase

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    first = int(os.environ.get("RANK", "0")) == 0
    log_file = spec["log_file"] if first else None
    level = logging.INFO if first else logging.WARNING
    with logs.stage(log_file, "train", spec["threads"], append=True, level=level):
        phase = section(PhaseConfig, spec["phase"], "train.phases")
        kwargs = dict(spec["kwargs"])
        for key in (
            "base_dir",
            "dataset",
            "out_dir",
            "resume_dir",
            "evaluation_items",
            "retention_reference",
        ):
            if kwargs.get(key) is not None:
                kwargs[key] = Path(kwargs[key])
        for key in ("parent_dirs", "replay"):
            kwargs[key] = [Path(p) for p in kwargs.get(key) or []]
        run_phase(phase, **kwargs)


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
