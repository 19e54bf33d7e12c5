"""Standard benchmarks through EleutherAI's lm-evaluation-harness, offline, when asked for.

``evaluate.lm_eval.tasks`` names the tasks (``mmlu``, ``ifeval``, or the user's own YAML tasks
in ``evaluate.lm_eval.include_path``); the rule ``lm_eval`` runs them on the base and on the
tuned model (Hugging Face weights) and writes build/eval/lm-eval/{model}.json, which the report
shows side by side. Nothing is downloaded: the harness runs with Hugging Face's offline switches
on, so a task's data must already be on the machine (the datasets cache, or local files named
by a task of your own). A task that cannot find its data stops the job with the task's name,
what it looked for and how to put it there.

The harness is an optional extra (``pip install 'labmake[lm-eval]'``): 27 packages and about
200 MB installed on top of labmake's lock, too much for a default most builds do not use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labmake.core import artifacts
from labmake.core.config import LmEvalConfig
from labmake.core.hashing import derive_seed

log = logging.getLogger(__name__)

EXTRA = "labmake[lm-eval]"


class HarnessError(ValueError):
    """The harness is not installed, a task is unknown, or its data is not on this machine."""


def _offline() -> None:
    """Hugging Face's offline switches, before the harness imports ``datasets``."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import datasets.config as dc
        import huggingface_hub.constants as hc

        dc.HF_DATASETS_OFFLINE = dc.HF_HUB_OFFLINE = hc.HF_HUB_OFFLINE = True
    except ImportError:  # pragma: no cover - datasets comes with the harness
        pass


def _import_harness() -> Any:
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise HarnessError(
            "evaluate.lm_eval.tasks needs lm-evaluation-harness, which is not installed: "
            f"pip install '{EXTRA}' (or set evaluate.lm_eval.tasks: [] in params.yaml)"
        ) from None
    return lm_eval, TaskManager


def check_tasks(tasks: Sequence[str], task_manager: Any) -> None:
    """Every task is known, and its data loads from this machine; else one clear message."""
    unknown = [t for t in tasks if t not in task_manager.all_tasks]
    if unknown:
        raise HarnessError(
            f"unknown lm-eval task(s) {unknown}: check the names (`lm-eval ls tasks`) or put "
            "your own task YAML files in a folder named by evaluate.lm_eval.include_path"
        )
    for task in tasks:
        try:
            task_manager.load([task])
        except Exception as exc:  # the harness raises many kinds when data is missing
            raise HarnessError(
                f"lm-eval task {task!r}: its data is not on this machine ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else 'no detail'}). labmake runs the "
                "harness offline: on a machine with network access load the task's dataset once "
                '(`python -c "import datasets; datasets.load_dataset(PATH, NAME)"`) and copy '
                "~/.cache/huggingface to this one, or write a task of your own over local files "
                "(dataset_path: json, dataset_kwargs: {data_files: ...}) in "
                "evaluate.lm_eval.include_path"
            ) from None


def _task_manager(task_manager_class: Any, include_path: str | None, tasks: list[str]) -> Any:
    """The harness's task index: the user's folder alone when it holds every task named
    (indexing the harness's own 14,000-odd task files takes about a minute on a small CPU)."""
    if include_path:
        own = task_manager_class(include_path=include_path, include_defaults=False)
        if all(t in own.all_tasks for t in tasks):
            return own
    return task_manager_class(include_path=include_path)


def _numbers(values: dict[str, Any]) -> dict[str, Any]:
    """A task's metrics, rounded; what is not a number (the alias) left out."""
    return {
        k: round(float(v), 6)
        for k, v in sorted(values.items())
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def evaluate(hf_dir: Path, cfg: LmEvalConfig, seed: int) -> dict[str, Any]:
    """Run ``cfg.tasks`` on the Hugging Face model in ``hf_dir``: the deterministic part of the
    harness's results (metrics, few-shot counts, task versions, sample counts)."""
    _offline()
    lm_eval, task_manager_class = _import_harness()
    tasks = list(cfg.tasks)
    task_manager = _task_manager(task_manager_class, cfg.include_path, tasks)
    check_tasks(tasks, task_manager)
    task_seed = derive_seed(seed, "lm_eval")
    out = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(hf_dir), "dtype": "float32", "device": "cpu"},
        tasks=tasks,
        num_fewshot=cfg.num_fewshot,
        batch_size=cfg.batch_size,
        limit=cfg.limit,
        task_manager=task_manager,
        log_samples=False,
        bootstrap_iters=0,
        random_seed=task_seed,
        numpy_random_seed=task_seed,
        torch_random_seed=task_seed,
        fewshot_random_seed=task_seed,
    )
    return {
        "tasks": {t: _numbers(v) for t, v in sorted(out["results"].items())},
        "n_shot": dict(sorted(out.get("n-shot", {}).items())),
        "versions": {k: str(v) for k, v in sorted(out.get("versions", {}).items())},
        "n_samples": {
            t: v.get("effective", v.get("original"))
            for t, v in sorted(out.get("n-samples", {}).items())
        },
    }


def run_model(model: str, hf_dir: Path, cfg: LmEvalConfig, seed: int, out: Path) -> None:
    """build/eval/lm-eval/{model}.json for one model."""
    log.info("%s: lm-eval tasks %s from %s", model, list(cfg.tasks), hf_dir)
    result = evaluate(hf_dir, cfg, seed)
    for task, metrics in result["tasks"].items():
        log.info("%s: %s %s", model, task, metrics)
    artifacts.write_json(out, {"model": model, "settings": _settings(cfg), **result})


def _settings(cfg: LmEvalConfig) -> dict[str, Any]:
    return {
        "tasks": list(cfg.tasks),
        "limit": cfg.limit,
        "num_fewshot": cfg.num_fewshot,
        "include_path": cfg.include_path,
    }
