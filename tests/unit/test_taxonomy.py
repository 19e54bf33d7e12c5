"""labmake.taxonomy: leaves, schema verdicts and messages, local documents, limits, loading."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from labmake.taxonomy.check import validate_leaf
from labmake.taxonomy.findings import Finding, TaxonomyError
from labmake.taxonomy.leaf import load_leaf
from labmake.taxonomy.limits import PromptBudget
from labmake.taxonomy.scan import find_leaves

SKILL = """\
version: 3
created_by: tester
task_description: Write a short poem about the topic in the question.
seed_examples:
  - question: Write a poem about the sea.
    answer: Waves roll in and out.
  - question: Write a poem about rain.
    answer: Rain taps on the roof.
  - question: Write a poem about snow.
    answer: Snow hushes the town.
  - question: Write a poem about wind.
    answer: Wind sings in the trees.
  - question: Write a poem about the sun.
    answer: The sun warms the stones.
"""

KNOWLEDGE_EXAMPLE = """\
  - context: {context}
    questions_and_answers:
      - question: What is said about {topic} first?
        answer: {topic} is described first.
      - question: What else is said about {topic}?
        answer: More is said about {topic}.
      - question: Why does {topic} matter?
        answer: {topic} matters to the story.
"""


def knowledge(document: str = "document:\n  patterns:\n    - '*.md'\n", contexts: int = 5) -> str:
    topics = ["Mars", "Venus", "Earth", "Jupiter", "Saturn", "Mercury", "Neptune"][:contexts]
    examples = "".join(
        KNOWLEDGE_EXAMPLE.format(context=f"{t} is a planet of the solar system.", topic=t)
        for t in topics
    )
    return (
        "version: 3\ncreated_by: tester\ndomain: astronomy\n"
        "document_outline: The planets of the solar system.\n"
        f"seed_examples:\n{examples}{document}"
    )


def write(root: Path, leaf: str, text: str, **files: str) -> Path:
    folder = root / leaf
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qna.yaml").write_text(text, encoding="utf-8")
    for name, content in files.items():
        (folder / name.replace("__", ".")).write_text(content, encoding="utf-8")
    return folder / "qna.yaml"


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


def only_error(findings: list[Finding]) -> Finding:
    errs = errors(findings)
    assert len(errs) == 1, errs
    return errs[0]


SKILL_LEAF = "compositional_skills/writing/poems"
KNOWLEDGE_LEAF = "knowledge/astronomy/planets"


# ------------------------------------------------------------------------------ leaves


def test_find_leaves_sorted_posix_skips_hidden_and_root(tmp_path: Path) -> None:
    write(tmp_path, "knowledge/b/leaf", SKILL)
    write(tmp_path, "compositional_skills/a", SKILL)
    write(tmp_path, "compositional_skills/a/nested", SKILL)
    write(tmp_path, ".hidden/x", SKILL)
    write(tmp_path, "knowledge/.draft/y", SKILL)
    write(tmp_path, ".", SKILL)  # a qna.yaml in the root belongs to no branch
    (tmp_path / "knowledge/b/other.yaml").write_text("a: 1\n")
    assert find_leaves(tmp_path) == [
        "compositional_skills/a",
        "compositional_skills/a/nested",
        "knowledge/b/leaf",
    ]


def test_find_leaves_refuses_symlink_out_of_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "leaf", SKILL)
    root = tmp_path / "taxonomy"
    write(root, SKILL_LEAF, SKILL)
    (root / "knowledge").mkdir()
    (root / "knowledge" / "linked").symlink_to(outside / "leaf")
    with pytest.raises(TaxonomyError, match="symlink leads outside the taxonomy"):
        find_leaves(root)


def test_find_leaves_does_not_follow_folder_symlinks(tmp_path: Path) -> None:
    write(tmp_path, SKILL_LEAF, SKILL)
    (tmp_path / "compositional_skills" / "loop").symlink_to(tmp_path / "compositional_skills")
    (tmp_path / "compositional_skills" / "a_alias").symlink_to(tmp_path / SKILL_LEAF)
    assert find_leaves(tmp_path) == [SKILL_LEAF]  # each leaf once, under its real path


def test_find_leaves_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(TaxonomyError, match="not a folder"):
        find_leaves(tmp_path / "missing")


# ----------------------------------------------------------------------- schema verdicts


def test_valid_files_have_no_findings(tmp_path: Path) -> None:
    write(tmp_path, SKILL_LEAF, SKILL)
    write(tmp_path, KNOWLEDGE_LEAF, knowledge(), planets__md="# Planets\n\nMars is red.\n")
    assert validate_leaf(tmp_path, SKILL_LEAF) == []
    assert validate_leaf(tmp_path, KNOWLEDGE_LEAF) == []


def test_five_mistakes_give_five_fixable_errors(tmp_path: Path) -> None:
    broken = textwrap.dedent("""\
        version: "3"
        task_description: Write short poems.
        seed_examples:
          - question: Write a poem about the sea.
            anwser: Waves roll in.
          - question: Write a poem about rain.
            answer:
          - question: Write a poem about snow.
            answer: 42
          - question: Write a poem about wind.
            answer: Wind sings.
          - question: Write a poem about wind.
            answer: Wind sings.
        """)
    write(tmp_path, SKILL_LEAF, broken)
    found = validate_leaf(tmp_path, SKILL_LEAF)
    got = {(f.line, f.yaml_path, f.message) for f in errors(found)}
    assert got == {
        (1, ".", "the file is missing `created_by`"),
        (1, "version", "`version` must be a whole number, not text ('3')"),
        (5, "seed_examples[0].anwser", "`anwser` should be `answer` in `seed_examples[0]`"),
        (7, "seed_examples[1].answer", "`seed_examples[1].answer` has no value"),
        (9, "seed_examples[2].answer", "`seed_examples[2].answer` must be text, not a number (42)"),
        (12, "seed_examples[4]", "`seed_examples[4]` repeats `seed_examples[3]` word for word"),
    }
    hints = {f.yaml_path: f.hint for f in found}
    assert "created_by: jdoe" in hints["."]
    assert "version: 3" in hints["version"]
    assert hints["seed_examples[0].anwser"] == "rename `anwser` to `answer`"
    assert "answer: |" in hints["seed_examples[1].answer"]
    assert "quotes" in hints["seed_examples[2].answer"]
    assert all(f.path.endswith("poems/qna.yaml") and f.col for f in found)


def test_too_few_seed_examples_says_how_many_to_add(tmp_path: Path) -> None:
    text = SKILL.split("  - question: Write a poem about snow.")[0]
    write(tmp_path, SKILL_LEAF, text)
    f = only_error(validate_leaf(tmp_path, SKILL_LEAF))
    assert f.message == "`seed_examples` has 2 entries; at least 5 are required"
    assert f.hint.startswith("add 3 more")
    assert (f.line, f.col) == (5, 3)


def test_version_1_skill_needs_only_one_example_and_is_not_linted(tmp_path: Path) -> None:
    text = (
        "created_by: tester\ntask_description: ''\nseed_examples:\n- question: q\n  answer: a   \n"
    )
    write(tmp_path, SKILL_LEAF, text)
    found = validate_leaf(tmp_path, SKILL_LEAF)
    assert errors(found) == []
    lint = [f for f in found if f.source == "yamllint"]
    assert lint and "InstructLab does not lint version 1 files" in lint[0].hint
    assert any("`task_description` is blank" in f.message for f in found)
    assert validate_leaf(tmp_path, SKILL_LEAF, ilab_strict=True) == []


@pytest.mark.parametrize("version", [1, 2])
def test_old_knowledge_versions_explain_the_upgrade(tmp_path: Path, version: int) -> None:
    text = knowledge().replace("version: 3", f"version: {version}")
    write(tmp_path, KNOWLEDGE_LEAF, text)
    f = only_error(validate_leaf(tmp_path, KNOWLEDGE_LEAF))
    assert f.message == f"knowledge version {version} is retired; InstructLab reads only version 3"
    assert "document_outline" in f.hint and "questions_and_answers" in f.hint


def test_knowledge_without_version_is_version_1(tmp_path: Path) -> None:
    write(tmp_path, KNOWLEDGE_LEAF, knowledge().replace("version: 3\n", ""))
    f = only_error(validate_leaf(tmp_path, KNOWLEDGE_LEAF))
    assert "has no `version`, so it is version 1" in f.message


@pytest.mark.parametrize("value", ["4", "0", "true", "-1"])
def test_unknown_versions(tmp_path: Path, value: str) -> None:
    write(tmp_path, SKILL_LEAF, SKILL.replace("version: 3", f"version: {value}"))
    f = only_error(validate_leaf(tmp_path, SKILL_LEAF))
    assert "is not a taxonomy format version (1, 2 or 3)" in f.message
    assert f.yaml_path == "version"


def test_integral_float_version_is_accepted_like_json_schema(tmp_path: Path) -> None:
    write(tmp_path, SKILL_LEAF, SKILL.replace("version: 3", "version: 3.0"))
    assert errors(validate_leaf(tmp_path, SKILL_LEAF)) == []


def test_kind_comes_from_the_deepest_branch_folder(tmp_path: Path) -> None:
    # a skill file under knowledge/ is checked as knowledge, as the reference does
    write(tmp_path, "compositional_skills/x/knowledge/y", SKILL)
    found = errors(validate_leaf(tmp_path, "compositional_skills/x/knowledge/y"))
    assert any("`domain`" in f.message for f in found)
    # outside the named branches, a `document` key makes it knowledge
    write(tmp_path, "foundational_skills/z", knowledge())
    found = validate_leaf(tmp_path, "foundational_skills/z")
    assert any("read as knowledge" in f.message for f in found)


def test_knowledge_v2_layout_in_v3_file_is_one_error(tmp_path: Path) -> None:
    text = knowledge().replace(
        "    questions_and_answers:\n      - question: What is said about Mars first?\n"
        "        answer: Mars is described first.\n"
        "      - question: What else is said about Mars?\n        answer: More is said about Mars.\n"
        "      - question: Why does Mars matter?\n        answer: Mars matters to the story.\n",
        "    question: What is Mars?\n    answer: A planet.\n",
    )
    write(tmp_path, KNOWLEDGE_LEAF, text, planets__md="Mars.\n")
    f = only_error(validate_leaf(tmp_path, KNOWLEDGE_LEAF))
    assert f.yaml_path == "seed_examples[0]"
    assert "nests them under `questions_and_answers:`" in f.message


def test_unknown_key_suggests_close_name(tmp_path: Path) -> None:
    write(tmp_path, SKILL_LEAF, SKILL + "seed_example: []\n")
    f = only_error(validate_leaf(tmp_path, SKILL_LEAF))
    assert f.message == "unknown key `seed_example`"
    assert f.hint.startswith("did you mean `seed_examples`?")
    assert (f.line, f.col) == (15, 1)


def test_non_string_keys_are_reported_not_crashed_on(tmp_path: Path) -> None:
    write(tmp_path, SKILL_LEAF, SKILL + "yes: 1\n2: b\n")
    found = errors(validate_leaf(tmp_path, SKILL_LEAF))
    assert {f.message for f in found} == {
        "unknown key `True (a bool, read from YAML)`",
        "unknown key `2 (a int, read from YAML)`",
    }


def test_empty_file_only_warns(tmp_path: Path) -> None:
    write(tmp_path, SKILL_LEAF, "# nothing yet\n")
    (f,) = validate_leaf(tmp_path, SKILL_LEAF)
    assert f.level == "warning"
    assert f.message == "the file is empty (InstructLab accepts it, but there is nothing to build)"


def test_top_level_list_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, SKILL_LEAF, "- question: q\n  answer: a\n")
    f = only_error(validate_leaf(tmp_path, SKILL_LEAF))
    assert "must be a mapping of keys" in f.message and "a list" in f.message


def test_yaml_syntax_error_points_at_the_place_and_explains(tmp_path: Path) -> None:
    write(tmp_path, SKILL_LEAF, SKILL.replace("Rain taps on the roof.", "Note: rain taps: on"))
    f = only_error(validate_leaf(tmp_path, SKILL_LEAF))
    assert f.source == "yaml" and f.line == 8
    assert "mapping values are not allowed here" in f.message
    assert "quotes" in f.hint


def test_yamllint_errors_fail_and_warnings_fail_only_in_ilab_strict(tmp_path: Path) -> None:
    write(
        tmp_path,
        SKILL_LEAF,
        SKILL.replace(
            "- question: Write a poem about rain.", "- question: Write a poem about rain.   "
        ),
    )
    f = only_error(validate_leaf(tmp_path, SKILL_LEAF))
    assert (f.source, f.line, f.message) == ("yamllint", 7, "trailing spaces (trailing-spaces)")
    write(tmp_path, SKILL_LEAF, SKILL + "\n")  # a blank line at the end
    (warning,) = validate_leaf(tmp_path, SKILL_LEAF)
    assert warning.level == "warning" and "empty-lines" in warning.message
    strict = only_error(validate_leaf(tmp_path, SKILL_LEAF, ilab_strict=True))
    assert "empty-lines" in strict.message and "ilab taxonomy diff" in strict.hint


# --------------------------------------------------------------------- local documents


def test_local_documents_are_resolved_and_sorted(tmp_path: Path) -> None:
    write(
        tmp_path,
        KNOWLEDGE_LEAF,
        knowledge("document:\n  patterns: ['*.md', 'notes/*.txt']\n"),
        b__md="B text\n",
        a__md="A text\n",
    )
    (tmp_path / KNOWLEDGE_LEAF / "notes").mkdir()
    (tmp_path / KNOWLEDGE_LEAF / "notes" / "c.txt").write_text("C text\n")
    leaf = load_leaf(tmp_path, KNOWLEDGE_LEAF)
    assert [d.name for d in leaf.documents] == ["a.md", "b.md", "c.txt"]
    assert all(d.is_absolute() for d in leaf.documents)


def test_local_document_pattern_matching_nothing(tmp_path: Path) -> None:
    write(
        tmp_path,
        KNOWLEDGE_LEAF,
        knowledge("document:\n  patterns: ['*.markdown']\n"),
        planets__md="text\n",
    )
    f = only_error(validate_leaf(tmp_path, KNOWLEDGE_LEAF))
    assert f.message == "pattern '*.markdown' matches no document in planets/"
    assert "planets.md" in f.hint and f.yaml_path == "document.patterns[0]"


def test_local_document_must_be_text(tmp_path: Path) -> None:
    write(tmp_path, KNOWLEDGE_LEAF, knowledge("document:\n  patterns: ['*']\n"))
    (tmp_path / KNOWLEDGE_LEAF / "paper.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    found = errors(validate_leaf(tmp_path, KNOWLEDGE_LEAF))
    assert any(
        "paper.doc, which is not a document format labmake reads" in f.message for f in found
    )


def test_local_documents_rejected_in_ilab_strict_mode(tmp_path: Path) -> None:
    write(tmp_path, KNOWLEDGE_LEAF, knowledge(), planets__md="text\n")
    found = errors(validate_leaf(tmp_path, KNOWLEDGE_LEAF, ilab_strict=True))
    assert {f.message for f in found} == {
        "`document` is missing `repo`",
        "`document` is missing `commit`",
    }
    assert "InstructLab reads knowledge documents only from git" in found[0].hint


def test_git_documents_are_only_schema_checked(tmp_path: Path) -> None:
    doc = "document:\n  repo: https://example.invalid/docs.git\n  commit: abc123\n  patterns: ['x.md']\n"
    write(tmp_path, KNOWLEDGE_LEAF, knowledge(doc))
    assert validate_leaf(tmp_path, KNOWLEDGE_LEAF) == []
    leaf = load_leaf(tmp_path, KNOWLEDGE_LEAF)
    assert leaf.documents == () and leaf.document_repo == "https://example.invalid/docs.git"
    write(tmp_path, KNOWLEDGE_LEAF, knowledge(doc.replace("  commit: abc123\n", "")))
    f = only_error(validate_leaf(tmp_path, KNOWLEDGE_LEAF))
    assert f.message == "`document` is missing `commit`"
    assert "or neither" in f.hint


# ------------------------------------------------------------------------------ limits


def test_limits_warn_by_default_and_fail_with_strict_limits(tmp_path: Path) -> None:
    long_answer = " ".join(["word"] * 300)
    text = SKILL.replace("Waves roll in and out.", long_answer).replace(
        "  - question: Write a poem about the sun.\n    answer: The sun warms the stones.\n",
        "  - question: write a poem about  THE SEA.\n    answer: " + long_answer + "\n",
    )
    write(tmp_path, SKILL_LEAF, text)
    found = validate_leaf(tmp_path, SKILL_LEAF)
    assert errors(found) == []
    messages = {f.message for f in found}
    assert (
        "`seed_examples[0].answer` has 300 words; InstructLab's guideline is at most 250"
        in messages
    )
    assert "`seed_examples[4]` repeats the question and answer of `seed_examples[0]`" in messages
    strict = validate_leaf(tmp_path, SKILL_LEAF, strict_limits=True)
    assert {f.message for f in errors(strict)} == messages
    assert validate_leaf(tmp_path, SKILL_LEAF, ilab_strict=True) == []


def test_blank_text_passes_the_schema_but_warns(tmp_path: Path) -> None:
    write(tmp_path, SKILL_LEAF, SKILL.replace("Rain taps on the roof.", "' '"))
    (f,) = validate_leaf(tmp_path, SKILL_LEAF)
    assert (f.level, f.message) == (
        "warning",
        "`seed_examples[1].answer` is blank (only spaces or newlines)",
    )


def test_context_window_budget(tmp_path: Path) -> None:
    write(tmp_path, SKILL_LEAF, SKILL)
    assert validate_leaf(tmp_path, SKILL_LEAF, context_tokens=2048) == []
    (f,) = validate_leaf(tmp_path, SKILL_LEAF, context_tokens=210)
    assert f.message.startswith("no seed example fits in a teacher prompt")
    assert "teacher.n_ctx is 210 tokens" in f.message and f.level == "warning"
    big = PromptBudget(n_ctx=300, max_tokens=160, examples_per_prompt=5)
    (f,) = validate_leaf(tmp_path, SKILL_LEAF, budget=big)
    assert f.message.startswith("the 5 longest seed examples")


def test_context_window_for_knowledge_counts_the_chunk(tmp_path: Path) -> None:
    write(tmp_path, KNOWLEDGE_LEAF, knowledge(), planets__md="text\n")
    budget = PromptBudget(n_ctx=2048, max_tokens=160, examples_per_prompt=3, chunk_tokens=2100)
    (f,) = validate_leaf(tmp_path, KNOWLEDGE_LEAF, budget=budget)
    assert "a document chunk" in f.message


# ----------------------------------------------------------------------------- loading


def test_load_skill_leaf(tmp_path: Path) -> None:
    write(tmp_path, SKILL_LEAF, SKILL)
    leaf = load_leaf(tmp_path, SKILL_LEAF)
    assert (leaf.name, leaf.kind, leaf.grounded, leaf.created_by) == (
        SKILL_LEAF,
        "skill",
        False,
        "tester",
    )
    assert leaf.seed_examples[1].answer == "Rain taps on the roof."
    assert leaf.seed_examples[1].context is None
    assert leaf.documents == () and leaf.qna_path == tmp_path / SKILL_LEAF / "qna.yaml"


def test_load_grounded_skill(tmp_path: Path) -> None:
    text = SKILL.replace(
        "  - question: Write a poem about the sea.\n",
        "  - context: The sea is grey today.\n    question: Write a poem about the sea.\n",
    )
    write(tmp_path, SKILL_LEAF, text)
    leaf = load_leaf(tmp_path, SKILL_LEAF)
    assert leaf.grounded and leaf.seed_examples[0].context == "The sea is grey today."


def test_load_knowledge_flattens_pairs_with_their_context(tmp_path: Path) -> None:
    write(tmp_path, KNOWLEDGE_LEAF, knowledge(), planets__md="# Planets\n")
    leaf = load_leaf(tmp_path, KNOWLEDGE_LEAF)
    assert leaf.kind == "knowledge" and not leaf.grounded
    assert len(leaf.seed_examples) == 15
    assert leaf.seed_examples[3].context == "Venus is a planet of the solar system."
    assert leaf.seed_examples[3].question == "What is said about Venus first?"
    assert leaf.task_description == "astronomy: The planets of the solar system."
    assert [d.name for d in leaf.documents] == ["planets.md"]


def test_load_invalid_leaf_raises_with_file_line_and_fix(tmp_path: Path) -> None:
    write(tmp_path, SKILL_LEAF, SKILL.replace("created_by: tester\n", ""))
    with pytest.raises(TaxonomyError) as info:
        load_leaf(tmp_path, SKILL_LEAF)
    text = str(info.value)
    assert f"{SKILL_LEAF}/qna.yaml:1:1: error" in text
    assert "missing `created_by`" in text and "fix: add `created_by:`" in text


def test_load_empty_leaf_raises(tmp_path: Path) -> None:
    write(tmp_path, SKILL_LEAF, "")
    with pytest.raises(TaxonomyError, match="the file is empty"):
        load_leaf(tmp_path, SKILL_LEAF)
