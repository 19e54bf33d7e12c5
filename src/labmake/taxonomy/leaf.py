"""A leaf as the build reads it: validated, with its seed examples and documents.

Loading checks the file exactly as ``labmake validate`` does (labmake's own mode), so a leaf
that validates loads, and a leaf that does not stops the build with the same findings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from labmake.taxonomy.check import CheckMode, LeafReport, check_leaf
from labmake.taxonomy.findings import ERROR, TaxonomyError, describe_findings
from labmake.taxonomy.formats import BUILTIN, Converted, ConverterChoice
from labmake.taxonomy.scan import QNA
from labmake.taxonomy.schema import KNOWLEDGE, SKILL


@dataclass(frozen=True)
class SeedExample:
    question: str
    answer: str
    context: str | None


@dataclass(frozen=True)
class Leaf:
    name: str  # taxonomy-relative folder, POSIX
    kind: str  # 'knowledge' | 'skill'
    grounded: bool  # a skill whose examples carry a context (always False for knowledge)
    task_description: str  # skills; knowledge: "<domain>: <document_outline>"
    created_by: str
    seed_examples: tuple[SeedExample, ...]  # knowledge: one per Q&A pair, with its context
    documents: tuple[Path, ...]  # local document files, sorted; empty for skills and git form
    converted: tuple[Converted, ...]  # their text, in the same order
    qna_path: Path
    version: int = 3
    domain: str = ""  # knowledge only
    document_outline: str = ""  # knowledge only
    document_repo: str | None = None  # knowledge, git form: not fetched by validation
    document_commit: str | None = None
    document_patterns: tuple[str, ...] = ()


def load_leaf(root: Path, leaf: str, converter: ConverterChoice = BUILTIN) -> Leaf:
    """The validated leaf, ready for the seeds stage (its documents converted by ``converter``);
    :class:`TaxonomyError` if invalid."""
    root = Path(root)
    report = check_leaf(root, leaf, CheckMode(converter=converter))
    errors = [f for f in report.findings if f.level == ERROR]
    if errors:
        raise TaxonomyError(describe_findings(errors))
    if not report.data:
        raise TaxonomyError(f"{report.display}: the file is empty; fill it in or delete the leaf")
    qna = root.joinpath(*PurePosixPath(leaf).parts, QNA)
    name = PurePosixPath(leaf).as_posix()
    if report.kind == KNOWLEDGE:
        return _knowledge_leaf(name, qna, report)
    return _skill_leaf(name, qna, report)


def _knowledge_leaf(name: str, qna: Path, report: LeafReport) -> Leaf:
    data: dict[str, Any] = report.data
    document = data["document"]
    examples = tuple(
        SeedExample(pair["question"], pair["answer"], example["context"])
        for example in data["seed_examples"]
        for pair in example["questions_and_answers"]
    )
    return Leaf(
        name=name,
        kind=KNOWLEDGE,
        grounded=False,  # "grounded" describes skills; knowledge grounds on its documents
        task_description=f"{data['domain']}: {data['document_outline']}",
        created_by=data["created_by"],
        seed_examples=examples,
        documents=tuple(report.documents),
        converted=tuple(report.converted[d] for d in report.documents),
        qna_path=qna,
        version=report.version,
        domain=data["domain"],
        document_outline=data["document_outline"],
        document_repo=document.get("repo"),
        document_commit=document.get("commit"),
        document_patterns=tuple(document["patterns"]),
    )


def _skill_leaf(name: str, qna: Path, report: LeafReport) -> Leaf:
    data: dict[str, Any] = report.data
    examples = tuple(
        SeedExample(e["question"], e["answer"], e.get("context")) for e in data["seed_examples"]
    )
    return Leaf(
        name=name,
        kind=SKILL,
        grounded=any(e.context for e in examples),
        task_description=data["task_description"],
        created_by=data["created_by"],
        seed_examples=examples,
        documents=(),
        converted=(),
        qna_path=qna,
        version=report.version,
    )
