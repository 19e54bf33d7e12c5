"""``labmake data show LEAF --documents``: a knowledge leaf's documents as the teacher will read
them -- PDF, Word and HTML converted to text, Markdown as it is -- before any build, read and
converted exactly as the seeds stage does (from the same cache)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from labmake.cli.exit_codes import EXIT_USAGE
from labmake.cli.leaves import LeafError, leaf_name


def show_documents(arg: str, params_path: Path, out: TextIO | None = None) -> int:
    from labmake.core.config import ConfigError, load
    from labmake.taxonomy.document_sources import DocumentSources
    from labmake.taxonomy.findings import TaxonomyError
    from labmake.taxonomy.formats import BUILTIN, ConverterChoice
    from labmake.taxonomy.git_documents import DocumentError
    from labmake.taxonomy.leaf import load_leaf
    from labmake.taxonomy.seeds import documents_of

    out = out or sys.stdout
    try:
        cfg = load(params_path) if params_path.is_file() else None
        base = params_path.parent if cfg is not None else Path()
        root = base / (cfg.taxonomy.root if cfg is not None else "taxonomy")
        sources = (
            DocumentSources(tuple(cfg.taxonomy.document_sources), base) if cfg is not None else None
        )
        choice = ConverterChoice.of(cfg.seeds) if cfg is not None else BUILTIN
        leaf = load_leaf(root, leaf_name(arg, root), choice)
        if leaf.kind != "knowledge":
            raise LeafError(f"{leaf.name} is a skill: only knowledge leaves have documents")
        documents = documents_of(leaf, sources, choice)
    except (ConfigError, LeafError, TaxonomyError, DocumentError) as exc:
        print(f"labmake data show: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for record, text in documents:
        where = f"{record['repo']} at {record['commit'][:12]}: " if "repo" in record else ""
        out.write(
            f"── {where}{record['name']} ({record['format']}, {record['converter']}; "
            f"{len(text)} characters) ──\n{text.rstrip()}\n\n"
        )
    out.write(f"{len(documents)} document(s) of {leaf.name}\n")
    return 0
