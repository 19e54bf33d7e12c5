"""A SentencePiece tokenizer's "▁" prefix, put where llama.cpp puts it, before training.

transformers 5 builds the tokenizer of Llama 2, Mistral and Phi-3 folders with a ``Metaspace``
pre-tokenizer that prepends "▁" to the first piece of text only ("first") or to pieces that do
not already start with a space ("always"). llama.cpp's SentencePiece tokenizer prepends a space
to the text at the start and after every special token, whatever it starts with
(``add_space_prefix``), so the two split a chat turn differently ("<s>[INST] hi" gives another
token after [INST]). A tuned model must see in llama.cpp the tokens it was trained on: the base
folder's tokenizer is rewritten to llama.cpp's rule (the legacy ``Prepend("▁")`` normalizer,
which transformers applies to every piece of text between special tokens) and saved as a plain
fast tokenizer, so training, evaluation and the exported GGUF split text alike. The vocabulary,
merges, special tokens and chat template are unchanged; only text that starts with a space or
follows a special token is split differently from the source tokenizer, as llama.cpp always
split it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPACE = "\u2581"  # SentencePiece's "▁"
PREPEND_RULE = {
    "type": "Sequence",
    "normalizers": [
        {"type": "Prepend", "prepend": SPACE},
        {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
    ],
}


def _prepending_metaspace(spec: dict[str, Any]) -> bool:
    pre = spec.get("pre_tokenizer") or {}
    return (
        pre.get("type") == "Metaspace"
        and pre.get("replacement") == SPACE
        and not pre.get("split")
        and pre.get("prepend_scheme") in ("first", "always")
        and not spec.get("normalizer")
    )


def use_llama_cpp_prefix(folder: Path) -> bool:
    """Rewrite the tokenizer saved in ``folder`` to llama.cpp's "▁" rule when it prepends with a
    Metaspace pre-tokenizer (see the module docstring); False: nothing to do."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        return False
    spec = json.loads(backend.to_str())
    if not _prepending_metaspace(spec):
        return False
    spec["pre_tokenizer"] = None
    spec["normalizer"] = PREPEND_RULE
    plain = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        bos_token=tok.bos_token,
        eos_token=tok.eos_token,
        unk_token=tok.unk_token,
        pad_token=tok.pad_token,
        model_max_length=tok.model_max_length,
    )
    plain.chat_template = tok.chat_template
    plain.save_pretrained(folder)
    return True
