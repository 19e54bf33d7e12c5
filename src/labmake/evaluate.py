"""Stage (shared tail): did the model learn what the taxonomy teaches?

On the held-out items of build/data/eval.jsonl (seed Q&A never trained on):
- reference NLL: mean negative log-likelihood per token of the reference answer given the
  question, for the base student and the tuned model (HF weights; deterministic, no judge);
- for every exported GGUF: the answer it generates (greedy, via llama.cpp, with the model's
  chat template) and its token F1 against the reference.
Results per leaf and overall in build/eval/report.json. Only deterministic values go in the
report (no timings), so two builds of the same inputs give the same bytes.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import io
from .config import EvaluateConfig
from .filters import tokens

log = logging.getLogger(__name__)


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return 0.0
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def reference_nll(model_dir: Path, items: Sequence[dict[str, Any]]) -> list[float]:
    """Per item: mean NLL (nats/token) of the assistant's answer given the user turn.

    The answer's tokens are exactly those the trainer takes its loss on (same template, same
    masking), so a lower number means the training objective generalised to held-out items.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .train import collate, encode, loss_at_labels

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    out = []
    with torch.no_grad():
        for item in items:
            batch = collate([encode(tokenizer, item["messages"])], tokenizer.pad_token_id or 0)
            loss, n_tokens = loss_at_labels(
                model, batch["input_ids"], batch["attention_mask"], batch["labels"]
            )
            out.append(float(loss) / max(n_tokens, 1))
    return out


def gguf_answers(gguf: Path, items: Sequence[dict[str, Any]], cfg: EvaluateConfig) -> list[str]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=cfg.n_threads, seed=0, verbose=False)
    answers = []
    try:
        for item in items:
            llm.reset()
            out = llm.create_chat_completion(
                messages=item["messages"][:-1],
                max_tokens=cfg.max_new_tokens,
                temperature=0.0,
                seed=0,
            )
            answers.append((out["choices"][0]["message"]["content"] or "").strip())
    finally:
        llm.close()
    return answers


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 6) if values else math.nan


def summarize(
    items: Sequence[dict[str, Any]],
    base_nll: Sequence[float],
    tuned_nll: Sequence[float],
    answers: dict[str, list[str]],
) -> dict[str, Any]:
    by_leaf: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_leaf[item["leaf"]].append(i)

    def scores(indices: Sequence[int]) -> dict[str, Any]:
        base = _mean([base_nll[i] for i in indices])
        tuned = _mean([tuned_nll[i] for i in indices])
        return {
            "n": len(indices),
            "reference_nll": {"base": base, "tuned": tuned, "delta": round(tuned - base, 6)},
            "token_f1": {
                name: _mean([token_f1(texts[i], items[i]["answer"]) for i in indices])
                for name, texts in sorted(answers.items())
            },
        }

    leaves = {leaf: scores(idx) for leaf, idx in sorted(by_leaf.items())}
    return {
        "metric_notes": {
            "reference_nll": "mean NLL (nats/token) of the reference answer; lower is better",
            "token_f1": "token F1 of the greedy GGUF answer against the reference; higher is better",
        },
        "overall": scores(range(len(items))),
        "leaves": leaves,
        "improved_leaves": sorted(
            leaf for leaf, s in leaves.items() if s["reference_nll"]["delta"] < 0
        ),
        "samples": [
            {
                "leaf": item["leaf"],
                "question": item["messages"][0]["content"],
                "reference": item["answer"],
                "answers": {name: texts[i] for name, texts in sorted(answers.items())},
            }
            for i, item in enumerate(items)
        ],
    }


def run(
    eval_path: Path,
    base_dir: Path,
    tuned_dir: Path,
    ggufs: dict[str, Path],
    cfg: EvaluateConfig,
    out: Path,
) -> None:
    items = io.read_jsonl(eval_path)
    if not items:
        raise ValueError(
            f"{eval_path}: no held-out items; set mix.eval_seeds_per_leaf >= 1 in params.yaml"
        )
    log.info("scoring %d held-out items: base student", len(items))
    base_nll = reference_nll(base_dir, items)
    log.info("scoring %d held-out items: tuned model", len(items))
    tuned_nll = reference_nll(tuned_dir, items)
    answers = {}
    for name, path in sorted(ggufs.items()):
        log.info("generating answers with %s", path)
        answers[name] = gguf_answers(path, items, cfg)
    report = summarize(items, base_nll, tuned_nll, answers)
    overall = report["overall"]["reference_nll"]
    log.info("reference NLL: base %.4f -> tuned %.4f", overall["base"], overall["tuned"])
    io.write_json(out, report)
