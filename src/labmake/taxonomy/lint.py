"""yamllint with the rules of InstructLab's validator, its problems as findings with a fix.

The reference lints files of version 2 and later and fails them on yamllint errors;
``ilab taxonomy diff`` fails them on warnings too. yamllint is imported on first use, so a
command that never lints does not pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from labmake.taxonomy.findings import ERROR, WARNING, Finding, yaml_path
from labmake.taxonomy.source import Parsed
from labmake.taxonomy.yaml_nodes import path_at

# The reference's yamllint configuration (instructlab-schema's DEFAULT_YAMLLINT_CONFIG).
YAMLLINT_CONFIG = "{extends: relaxed, rules: {line-length: disable}}"

_LINT_HINTS = {
    "trailing-spaces": "delete the spaces or tabs at the end of this line",
    "new-line-at-end-of-file": "end the file with a line break (Enter after the last line)",
    "key-duplicates": "this key appears twice in one mapping and YAML keeps only the last "
    "value; merge the two or delete one",
    "indentation": "indent this line like the other entries of the same list or mapping "
    "(spaces only)",
    "empty-lines": "delete the extra blank lines",
    "new-lines": "save the file with Unix line endings (LF)",
    "colons": "write one space after a colon and none before it",
    "commas": "write `, ` between items: no space before a comma, one after",
    "hyphens": "write one space after the `-` of a list item",
    "braces": "use at most one space inside `{ }`",
    "brackets": "use at most one space inside `[ ]`",
    "anchors": "define each `&anchor` once, above every `*alias` that uses it",
    "syntax": "fix the YAML syntax at this position",
}


@cache
def _lint_config() -> Any:
    from yamllint.config import YamlLintConfig

    return YamlLintConfig(YAMLLINT_CONFIG)


def lint(display: str, parsed: Parsed, *, enforce: bool, ilab_strict: bool) -> Iterator[Finding]:
    """yamllint's problems in ``parsed``; they fail the file only when ``enforce``.

    ``display``: the file as the user named it. ``ilab_strict``: yamllint warnings are errors.
    """
    from yamllint import linter

    # Bytes, as the reference pipes the text to yamllint (which then drops a UTF-8 BOM).
    for p in linter.run(parsed.text.encode("utf-8"), _lint_config()):
        level = ERROR if enforce and (p.level == "error" or ilab_strict) else WARNING
        rule = p.rule or "syntax"
        hint = _LINT_HINTS.get(rule, "see the yamllint documentation for this rule")
        if not enforce:
            hint += " (InstructLab does not lint version 1 files; it will once you upgrade)"
        elif p.level == "warning" and ilab_strict:
            hint += " (a warning for InstructLab's validator, an error for `ilab taxonomy diff`)"
        at = path_at(parsed.node, p.line, p.column)
        yield Finding(
            display,
            p.line,
            p.column,
            yaml_path(at) if at is not None else None,
            level,
            f"{p.desc} ({rule})",
            hint,
            "yamllint",
        )
