"""Seed examples that trip the safety policy's deterministic layer (labmake's own mode).

A teacher copies what seed examples show: an e-mail address or an insult in a seed turns up in
the synthetic data, where the pipeline's safety blocks then drop the samples that repeat it.
Saying so at ``labmake validate`` time, at the seed's own line, lets the contributor fix the
source instead. A warning by default (a seed may rightly quote what the policy lists, e.g. a
leaf about phishing), an error with ``--strict-limits``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from labmake.core import safety
from labmake.core.safety.personal import DESCRIPTIONS
from labmake.taxonomy.findings import WARNING, Issue, yaml_path


def _seed_texts(data: Mapping[str, Any], kind: str) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(data path, text) of every context, question and answer of the seed examples."""
    for i, example in enumerate(data.get("seed_examples") or []):
        if not isinstance(example, Mapping):
            continue
        if isinstance(example.get("context"), str):
            yield ("seed_examples", i, "context"), example["context"]
        pairs = example.get("questions_and_answers") if kind == "knowledge" else [example]
        for j, pair in enumerate(pairs if isinstance(pairs, list) else []):
            base = (
                ("seed_examples", i)
                if kind != "knowledge"
                else ("seed_examples", i, "questions_and_answers", j)
            )
            for role in ("question", "answer"):
                if isinstance(pair, Mapping) and isinstance(pair.get(role), str):
                    yield (*base, role), pair[role]


def seed_safety_issues(
    data: Mapping[str, Any], kind: str, policy: safety.Policy | None = None, level: str = WARNING
) -> list[Issue]:
    """One issue per seed text that trips a detector or lexicon term of ``policy`` (default:
    the shipped one), naming the categories and what was found (personal data masked)."""
    policy = policy or safety.load()
    issues = []
    for path, text in _seed_texts(data, kind):
        hits = safety.scan(text, policy)
        if not hits:
            continue
        found = "; ".join(
            f"{h.category}: {DESCRIPTIONS[h.detector]} ({safety.masked(h)!r})" for h in hits[:3]
        )
        more = f" and {len(hits) - 3} more" if len(hits) > 3 else ""
        issues.append(
            Issue(
                path,
                f"`{yaml_path(path)}` trips the safety policy ({policy.name} v{policy.version}): "
                f"{found}{more}",
                "replace it with made-up text that is neither personal data nor unsafe (a "
                "placeholder such as <email>, a role address such as support@...); the teacher "
                "copies what seeds show, and the safety blocks drop the samples that repeat it. "
                "If the leaf must show such text, a policy file (generate.safety.policy) can change "
                "what counts",
                "safety",
                level,
            )
        )
    return issues
