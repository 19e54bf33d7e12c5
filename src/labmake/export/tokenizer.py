"""A Hugging Face tokenizer folder -> a tokenizer-only GGUF (``tokenizer.*`` metadata, no tensors).

    hf_dir (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
            chat_template.jinja, tokenizer.model)  --write_hf_tokenizer_gguf-->  tokenizer.gguf

The folder is read through transformers (so added tokens, special tokens, ``add_bos_token``
and the chat template are what transformers itself uses) and the pipeline it runs is read from
the backend tokenizer's JSON. Two kinds are written, each only when llama.cpp splits text into
exactly the same tokens as transformers:

- SentencePiece BPE (GGUF model ``llama``: tokens, scores, types with byte and control tokens).
  Scores and types come from ``tokenizer.model`` when the folder has one, else from the merge
  ranks of ``tokenizer.json``. The space handling must be one llama.cpp has: no prefix (spaces
  replaced by "▁", Gemma) or the legacy ``Prepend("▁")`` normalizer (Llama 2, Mistral, Phi-3:
  llama.cpp's ``add_space_prefix``, which also prefixes text after a special token). A
  ``Metaspace`` pre-tokenizer that prepends is refused: it skips the prefix when the text
  already starts with a space, or after a special token, and llama.cpp does neither (a
  Hugging Face student's base folder is given llama.cpp's rule first:
  :mod:`labmake.training.space_prefix`).
- Byte-level BPE (GGUF model ``gpt2``: tokens, merges, types, ``tokenizer.ggml.pre``). The
  pre-tokenizer must be one whose llama.cpp counterpart uses the same regex: GPT-2's
  (``gpt-2``), Llama 3's (``llama-bpe``, which also whole-word matches like
  ``ignore_merges``), Qwen 2's (``qwen2``), or digits split one by one before GPT-2's
  (``refact``: StarCoder, Granite 3, SmolLM). An NFC normalizer (Qwen) is accepted:
  llama.cpp does not normalize, which differs only on text that is not already NFC.

Added tokens that strip neighbouring spaces (lstrip/rstrip/single_word) are refused: llama.cpp
decides stripping by model name, not from the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from labmake.export.families import ExportError
from labmake.export.writer import gguf_file

SPACE = "\u2581"  # SentencePiece's "▁"
# HF Split regex of a byte-level pre-tokenizer -> (llama.cpp pre name, ignore_merges it implies).
_SPLIT_REGEXES = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
    r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": ("llama-bpe", True),
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
    r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": ("qwen2", False),
}
_DIGITS = ({"type": "Digits", "individual_digits": True},)
_BYTE_LEVEL_PRE = {"type": "ByteLevel", "add_prefix_space": False}


@dataclass
class _Vocab:
    """What the GGUF holds about the vocabulary."""

    model: str  # gguf tokenizer model: "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    tokens: list[str]
    types: list[gguf.TokenType]
    scores: list[float] = field(default_factory=list)
    merges: list[str] = field(default_factory=list)
    pre: str | None = None
    add_space_prefix: bool | None = None


def write_hf_tokenizer_gguf(hf_dir: Path, out: Path, arch: str) -> None:
    """Write the tokenizer of the Hugging Face folder ``hf_dir`` as a tensor-less GGUF ``out``.

    ``arch``: the GGUF architecture name the file declares (``general.architecture``).
    Raises ExportError, naming the file and the feature, for a tokenizer llama.cpp would split
    differently from transformers.
    """
    hf_dir, out = Path(hf_dir), Path(out)
    tok = _load(hf_dir)
    spec = json.loads(tok.backend_tokenizer.to_str())
    where = str(hf_dir / "tokenizer.json")
    tokens = _token_list(tok, where)
    special = _check_added_tokens(spec, where)
    if _is_byte_level(spec):
        vocab = _gpt2_vocab(spec, tokens, special, where)
    else:
        vocab = _sentencepiece_vocab(spec, tokens, special, hf_dir, where)
    add_bos, add_eos = _added_specials(spec, tok, where)
    with gguf_file(out, arch) as writer:
        _add_vocab(writer, vocab)
        _add_special_ids(writer, tok)
        writer.add_add_bos_token(add_bos)
        writer.add_add_eos_token(add_eos)
        if isinstance(tok.chat_template, str):
            writer.add_chat_template(tok.chat_template)


def _load(hf_dir: Path) -> Any:
    from transformers import AutoTokenizer

    if not (hf_dir / "tokenizer.json").is_file() and not (hf_dir / "tokenizer.model").is_file():
        raise ExportError(f"{hf_dir}: no tokenizer.json or tokenizer.model; not a tokenizer")
    tok = AutoTokenizer.from_pretrained(hf_dir)
    if getattr(tok, "backend_tokenizer", None) is None:
        raise ExportError(f"{hf_dir}: transformers loads no tokenizers-library tokenizer here")
    return tok


def _token_list(tok: Any, where: str) -> list[str]:
    """Every token text by id (added tokens included); ids must run 0..n-1 without holes."""
    by_id = {i: t for t, i in tok.backend_tokenizer.get_vocab(with_added_tokens=True).items()}
    if sorted(by_id) != list(range(len(by_id))):
        raise ExportError(f"{where}: token ids have holes; a GGUF vocabulary cannot skip ids")
    return [by_id[i] for i in range(len(by_id))]


def _check_added_tokens(spec: dict[str, Any], where: str) -> dict[int, bool]:
    """Added token id -> special; refuses stripping flags llama.cpp cannot read from a file."""
    out = {}
    for added in spec.get("added_tokens") or []:
        for flag in ("lstrip", "rstrip", "single_word"):
            if added.get(flag):
                raise ExportError(
                    f"{where}: added token {added['content']!r} sets {flag}; llama.cpp does not "
                    "strip around tokens from the file"
                )
        out[int(added["id"])] = bool(added.get("special"))
    return out


def _added_type(special: dict[int, bool], i: int) -> gguf.TokenType | None:
    if i not in special:
        return None
    return gguf.TokenType.CONTROL if special[i] else gguf.TokenType.USER_DEFINED


def _is_byte_level(spec: dict[str, Any]) -> bool:
    pre = spec.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    return any(p.get("type") == "ByteLevel" for p in parts)


def _check_bpe_model(model: dict[str, Any], where: str) -> None:
    if model.get("type") != "BPE":
        raise ExportError(
            f"{where}: tokenizer model {model.get('type')!r} is not BPE; llama.cpp's "
            "SentencePiece and GPT-2 tokenizers both merge pairs"
        )
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise ExportError(f"{where}: BPE {key} {model[key]!r} is set")


# ---------------------------------------------------------------------------------------------
# byte-level BPE (GGUF model "gpt2")


def _gpt2_vocab(
    spec: dict[str, Any], tokens: list[str], special: dict[int, bool], where: str
) -> _Vocab:
    model = spec["model"]
    _check_bpe_model(model, where)
    if model.get("byte_fallback"):
        raise ExportError(f"{where}: byte-level BPE with byte_fallback is set")
    normalizer = spec.get("normalizer")
    if normalizer is not None and normalizer.get("type") != "NFC":
        raise ExportError(f"{where}: normalizer {normalizer.get('type')!r} (llama.cpp has none)")
    pre, ignore_merges = _gpt2_pre(spec["pre_tokenizer"], where)
    if bool(model.get("ignore_merges")) != ignore_merges:
        raise ExportError(
            f"{where}: BPE ignore_merges {model.get('ignore_merges')} with pre-tokenizer "
            f"{pre!r} (llama.cpp implies {ignore_merges})"
        )
    types = [_added_type(special, i) or gguf.TokenType.NORMAL for i in range(len(tokens))]
    return _Vocab("gpt2", tokens, types, merges=_merges(model), pre=pre)


def _gpt2_pre(pre: dict[str, Any], where: str) -> tuple[str, bool]:
    """The llama.cpp pre-tokenizer whose regex splits text as the HF pre-tokenizer does."""
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    *head, last = parts
    if last.get("type") != "ByteLevel" or last.get("add_prefix_space"):
        raise ExportError(f"{where}: byte-level pre-tokenizer {pre} (last must be ByteLevel)")
    if not head and last.get("use_regex", True):
        return "gpt-2", False
    if len(head) == 1 and last.get("use_regex", True) and _is_digit_split(head[0]):
        return "refact", False
    if len(head) == 1 and not last.get("use_regex", True) and head[0].get("type") == "Split":
        split = head[0]
        regex = (split.get("pattern") or {}).get("Regex")
        isolated = split.get("behavior") == "Isolated" and not split.get("invert")
        if isolated and regex in _SPLIT_REGEXES:
            return _SPLIT_REGEXES[regex]
    raise ExportError(
        f"{where}: pre-tokenizer {json.dumps(pre)} has no llama.cpp counterpart; supported: "
        "GPT-2's ByteLevel, Llama 3's and Qwen 2's Split regex, digits + ByteLevel"
    )


def _is_digit_split(part: dict[str, Any]) -> bool:
    if part.get("type") == "Digits":
        return bool(part.get("individual_digits"))
    return (
        part.get("type") == "Split"
        and (part.get("pattern") or {}).get("Regex") == r"\p{N}"
        and part.get("behavior") == "Isolated"
        and not part.get("invert")
    )


def _merges(model: dict[str, Any]) -> list[str]:
    """Merges as GGUF stores them, "left right" (tokenizers saves pairs or such strings)."""
    return [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]


# ---------------------------------------------------------------------------------------------
# SentencePiece BPE (GGUF model "llama")


def _sentencepiece_vocab(
    spec: dict[str, Any],
    tokens: list[str],
    special: dict[int, bool],
    hf_dir: Path,
    where: str,
) -> _Vocab:
    model = spec["model"]
    _check_bpe_model(model, where)
    add_prefix = _space_prefix(spec, where)
    has_bytes = "<0x00>" in tokens
    if has_bytes != bool(model.get("byte_fallback")):
        raise ExportError(
            f"{where}: byte_fallback {model.get('byte_fallback')} but the vocabulary "
            f"{'has' if has_bytes else 'lacks'} byte tokens; llama.cpp falls back to bytes "
            "exactly when they exist"
        )
    sp_path = hf_dir / "tokenizer.model"
    if sp_path.is_file():
        scores, types = _sentencepiece_file(sp_path, tokens, special)
    else:
        scores, types = _scores_from_merges(model, tokens, special)
    return _Vocab("llama", tokens, types, scores=scores, add_space_prefix=add_prefix)


def _space_prefix(spec: dict[str, Any], where: str) -> bool:
    """Whether llama.cpp must put "▁" before text (at the start and after special tokens)."""
    normalizer = spec.get("normalizer")
    steps = (
        normalizer.get("normalizers", [])
        if normalizer and normalizer.get("type") == "Sequence"
        else [normalizer] * bool(normalizer)
    )
    replace = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
    prepend = {"type": "Prepend", "prepend": SPACE}
    pre = spec.get("pre_tokenizer")
    metaspace = bool(pre) and pre.get("type") == "Metaspace"
    if metaspace and (pre.get("replacement") != SPACE or pre.get("split")):
        raise ExportError(f"{where}: Metaspace pre-tokenizer {pre} (only '▁', unsplit)")
    if metaspace and pre.get("prepend_scheme") != "never":
        raise ExportError(
            f"{where}: Metaspace prepend_scheme {pre.get('prepend_scheme')!r}: it skips the "
            "'▁' prefix where the text already starts with a space or follows a special "
            "token; llama.cpp's add_space_prefix does not (use the legacy Prepend normalizer)"
        )
    # Gemma saves Split(" ") after a normalizer that has turned every space into "▁": a no-op.
    noop_split = {"type": "Split", "pattern": {"String": " "}}
    if pre and not metaspace and not _subset(noop_split, pre):
        raise ExportError(f"{where}: pre-tokenizer {pre} has no SentencePiece counterpart")
    if steps in ([replace], [prepend, replace]) and not metaspace:
        return steps == [prepend, replace]
    if not steps and metaspace:
        return False
    raise ExportError(
        f"{where}: normalizer {json.dumps(normalizer)} has no llama.cpp counterpart "
        "(supported: Replace(' ', '▁'), optionally after Prepend('▁'))"
    )


def _subset(small: dict[str, Any], big: dict[str, Any]) -> bool:
    return all(big.get(k) == v for k, v in small.items())


def _sentencepiece_file(
    path: Path, tokens: list[str], special: dict[int, bool]
) -> tuple[list[float], list[gguf.TokenType]]:
    """Scores and types from tokenizer.model; added tokens beyond it score 0."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    if proto.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.BPE:
        raise ExportError(f"{path}: SentencePiece model type is not BPE (llama.cpp merges)")
    pieces = list(proto.pieces)
    if [p.piece for p in pieces] != tokens[: len(pieces)]:
        raise ExportError(f"{path}: pieces differ from tokenizer.json's vocabulary")
    scores = [p.score for p in pieces] + [0.0] * (len(tokens) - len(pieces))
    # SentencePiece's piece types use gguf.TokenType's numbers (NORMAL=1 ... BYTE=6).
    types = [_added_type(special, i) or gguf.TokenType(pieces[i].type) for i in range(len(tokens))]
    return scores, types


def _scores_from_merges(
    model: dict[str, Any], tokens: list[str], special: dict[int, bool]
) -> tuple[list[float], list[gguf.TokenType]]:
    """Without tokenizer.model: a merged token scores minus its merge's rank, the order in
    which transformers applies merges; llama.cpp merges the highest-scoring pair first."""
    rank: dict[str, int] = {}
    for r, merge in enumerate(_merges(model)):
        rank.setdefault(merge.replace(" ", ""), r)
    unk = model.get("unk_token")
    scores, types = [], []
    for i, text in enumerate(tokens):
        scores.append(-float(rank[text]) if text in rank else 0.0)
        kind = _added_type(special, i)
        if kind is None:
            is_byte = len(text) == 6 and text.startswith("<0x") and text.endswith(">")
            kind = gguf.TokenType.BYTE if is_byte else gguf.TokenType.NORMAL
            kind = gguf.TokenType.UNKNOWN if text == unk else kind
        types.append(kind)
    return scores, types


# ---------------------------------------------------------------------------------------------
# special tokens


def _added_specials(spec: dict[str, Any], tok: Any, where: str) -> tuple[bool, bool]:
    """(add_bos, add_eos): what the post-processor puts around a single text."""
    post = spec.get("post_processor")
    parts = post.get("processors", [post]) if post and post.get("type") == "Sequence" else [post]
    templates = [p for p in parts if p and p.get("type") == "TemplateProcessing"]
    if not templates:
        return False, False
    ids = [
        tok.convert_tokens_to_ids(item["SpecialToken"]["id"])
        for item in templates[-1]["single"]
        if "SpecialToken" in item
    ]
    sequence_at = [i for i, item in enumerate(templates[-1]["single"]) if "Sequence" in item]
    add_bos = bool(ids) and sequence_at[0] > 0 and ids[0] == tok.bos_token_id
    add_eos = bool(ids) and sequence_at[-1] < len(templates[-1]["single"]) - 1
    add_eos = add_eos and ids[-1] == tok.eos_token_id
    if len(ids) != add_bos + add_eos:
        raise ExportError(
            f"{where}: post-processor adds {ids}; llama.cpp adds only bos before and eos after"
        )
    return add_bos, add_eos


def _add_special_ids(writer: gguf.GGUFWriter, tok: Any) -> None:
    for token_id, add in (
        (tok.bos_token_id, writer.add_bos_token_id),
        (tok.eos_token_id, writer.add_eos_token_id),
        (tok.unk_token_id, writer.add_unk_token_id),
        (tok.pad_token_id, writer.add_pad_token_id),
    ):
        if token_id is not None:
            add(int(token_id))


def _add_vocab(writer: gguf.GGUFWriter, vocab: _Vocab) -> None:
    writer.add_tokenizer_model(vocab.model)
    if vocab.pre is not None:
        writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    if vocab.scores:
        writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    if vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(vocab.add_space_prefix)
