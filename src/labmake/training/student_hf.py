"""A Hugging Face student (``student.hf``): a local model folder, checked, hashed and copied.

The folder is what ``save_pretrained`` or a hub download leaves: config.json, safetensors
weights (one file, or shards with their index), tokenizer files. Nothing is downloaded and no
model code from the folder runs. :func:`build_base` copies it into a base folder as it is (no
conversion, the weights keep their dtype), with the chat template the build uses, the
tokenizer as GGUF metadata (``tokenizer.gguf``, what the exporter copies into every GGUF) and
``labmake_base.json`` last. :func:`folder_sha256` (the files that matter, in name order, read
in blocks) names the source wherever the build's provenance names its base model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labmake import __version__
from labmake.core import artifacts
from labmake.core.models import StudentError, base_source
from labmake.core.paths import BASE_MARKER, TOKENIZER_GGUF
from labmake.training import chat_template

if TYPE_CHECKING:
    from labmake.core.config import StudentConfig

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
# What is copied and hashed besides the weights (those present).
MODEL_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
TOKENIZERS = ("tokenizer.json", "tokenizer.model")  # one of them holds the vocabulary
# The GGUF layout (labmake.training.student) is format 1; a Hugging Face source's is this.
HF_BASE_FORMAT = 1
# Chat templates for models that carry none, by config.json model_type.
DEFAULT_TEMPLATES = {"gemma3_text": "gemma3", "gemma3": "gemma3"}


def check_folder(folder: Path, template: Path | None = None) -> dict[str, Any]:
    """Refuse (StudentError: the folder, what is wrong, the fix) a folder labmake cannot tune
    and export; its config.json when it can. Light: no torch, no weights read."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StudentError(
            f"params.yaml: student.hf: {folder}: no such folder; give the path (relative to the "
            "repository root) of a local Hugging Face model folder (config.json, safetensors "
            "weights, tokenizer files), e.g. one that `hf download` or save_pretrained wrote"
        )
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise StudentError(
            f"student.hf: {folder}: no config.json; name the model's own folder (the one that "
            "holds config.json beside the weights), not its parent or a single file"
        )
    config = chat_template._read_json(config_path)
    _check_code_and_weights(folder, config)
    if not any((folder / name).is_file() for name in TOKENIZERS):
        raise StudentError(
            f"student.hf: {folder}: no tokenizer (neither tokenizer.json nor tokenizer.model); "
            "copy the model's tokenizer files into the folder "
            "(AutoTokenizer.from_pretrained(...).save_pretrained(folder))"
        )
    _check_family(config, config_path)
    tokens = chat_template.special_tokens(folder)
    if template is not None:
        chat_template.read_template_file(template, tokens)
    else:
        own = student_template(folder, config)
        if own is None:
            raise StudentError(
                f"student.hf: {folder}: the model has no chat template (a base model often "
                "has none); write one in a Jinja file and name it in student.chat_template"
            )
        chat_template.check_template(own, f"student.hf: {folder}: its own chat template", tokens)
    return config


def _check_code_and_weights(folder: Path, config: dict[str, Any]) -> None:
    if config.get("auto_map"):
        raise StudentError(
            f"student.hf: {folder}: config.json has auto_map: this model's code ships in the "
            "folder (it needs trust_remote_code), and labmake never runs a model's own code; "
            "pick a model whose architecture transformers itself implements"
        )
    if config.get("quantization_config"):
        raise StudentError(
            f"student.hf: {folder}: the weights are quantized (config.json has "
            "quantization_config); labmake tunes the original weights: use the unquantized "
            "release of the model"
        )
    weight_files(folder)


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a folder: the shards its index names, or model.safetensors."""
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        shards = sorted(set(chat_template._read_json(index).get("weight_map", {}).values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing or not shards:
            raise StudentError(
                f"student.hf: {folder}: {WEIGHTS_INDEX} names shard(s) that are not there "
                f"({', '.join(missing[:3]) or 'none at all'}); download the whole model again"
            )
        return [folder / s for s in shards]
    if (folder / WEIGHTS).is_file():
        return [folder / WEIGHTS]
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")) or any(folder.glob("*.pth")):
        raise StudentError(
            f"student.hf: {folder}: only PyTorch .bin (pickle) weights, no safetensors; "
            "labmake loads safetensors only (unpickling can run code). Convert them once, where "
            "you trust the file: AutoModelForCausalLM.from_pretrained(folder)"
            ".save_pretrained(new_folder), and name new_folder in student.hf"
        )
    stray = sorted(p.name for p in folder.glob("*.safetensors"))
    detail = f" ({', '.join(stray[:3])} without {WEIGHTS_INDEX})" if stray else ""
    raise StudentError(
        f"student.hf: {folder}: no {WEIGHTS} and no {WEIGHTS_INDEX}{detail}; the folder must "
        "hold the model's safetensors weights as save_pretrained writes them"
    )


def _check_family(config: dict[str, Any], config_path: Path) -> str:
    """The GGUF architecture the exporter writes this model as (StudentError if none)."""
    from labmake.export.families import ExportError, family_for

    try:
        return str(family_for(config, str(config_path)).arch)
    except ExportError as exc:
        raise StudentError(
            f"student.hf: {exc}; the tuned model could not be exported to GGUF: pick a student "
            "of a supported architecture"
        ) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise StudentError(
            f"student.hf: {config_path}: config.json lacks what the GGUF exporter needs ({exc})"
        ) from None


def student_template(folder: Path, config: dict[str, Any]) -> str | None:
    """The folder's own chat template, else labmake's for its model family, else None."""
    own = chat_template.folder_template(folder)
    if own is not None:
        return own
    if DEFAULT_TEMPLATES.get(str(config.get("model_type"))) == "gemma3":
        from labmake.training.student import GEMMA_CHAT_TEMPLATE

        return GEMMA_CHAT_TEMPLATE
    return None


def source_files(folder: Path) -> list[Path]:
    """The files of the folder that make the student, in name order."""
    folder = Path(folder)
    names = {*MODEL_FILES, *TOKENIZER_FILES, WEIGHTS_INDEX}
    files = [folder / n for n in names if (folder / n).is_file()]
    return sorted({*files, *weight_files(folder)}, key=lambda p: p.name)


def folder_sha256(folder: Path) -> str:
    """The student's content hash: each file's name and sha256 (streamed), in name order. A
    chat template file that overrides the folder's has its own (chat_template_sha256)."""
    h = hashlib.sha256()
    for path in source_files(folder):
        h.update(f"{path.name}\0{artifacts.sha256_file(path)}\n".encode())
    return h.hexdigest()


def build_base(folder: Path, out_dir: Path, template: Path | None = None) -> None:
    """Write ``out_dir`` as the base folder of the Hugging Face model in ``folder``."""
    from labmake.export.families import ExportError
    from labmake.export.tokenizer import write_hf_tokenizer_gguf
    from labmake.training.space_prefix import use_llama_cpp_prefix

    folder = Path(folder)
    config = check_folder(folder, template)
    arch = _check_family(config, folder / "config.json")
    sha = folder_sha256(folder)
    log.info("base model: copying %s (%s, sha256 %s)", folder, arch, sha[:16])
    with artifacts.atomic_dir(out_dir) as tmp:
        for path in source_files(folder):
            shutil.copyfile(path, tmp / path.name)
        text = (
            template.read_text(encoding="utf-8")
            if template is not None
            else student_template(folder, config)
        )
        chat_template.install_template(tmp, str(text))
        if use_llama_cpp_prefix(tmp):
            log.info(
                "base model: the tokenizer's Metaspace prefix rule was replaced by llama.cpp's "
                "(a '▁' before text at the start and after every special token), so training "
                "and llama.cpp split text alike"
            )
        try:
            write_hf_tokenizer_gguf(tmp, tmp / TOKENIZER_GGUF, arch)
        except ExportError as exc:
            raise StudentError(f"student.hf: {exc}") from None
        artifacts.write_json(tmp / BASE_MARKER, _marker(folder, config, sha, template))


def _marker(
    folder: Path, config: dict[str, Any], sha: str, template: Path | None
) -> dict[str, Any]:
    architectures = config.get("architectures") or ["unknown"]
    return {
        "source_hf": folder.name,
        "source_hf_sha256": sha,
        "chat_template": template.name if template is not None else None,
        "chat_template_sha256": artifacts.sha256_file(template) if template is not None else None,
        "source_general": {"general.name": folder.name},
        "format": HF_BASE_FORMAT,
        "architecture": architectures[0],
        "model_type": config.get("model_type"),
        "dtype": config.get("dtype") or config.get("torch_dtype"),
        "parameters": parameter_count(weight_files(folder)),
        "labmake_version": __version__,
    }


def parameter_count(files: list[Path]) -> int:
    """Parameters stored in safetensors files, from their headers (no tensor is read)."""
    total = 0
    for path in files:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
        for name, entry in header.items():
            if name != "__metadata__":
                n = 1
                for dim in entry["shape"]:
                    n *= int(dim)
                total += n
    return total


def student_provenance(base_dir: Path) -> dict[str, str]:
    """GGUF metadata of the student GGUF a Hugging Face student is exported to."""
    name, sha = base_source(base_dir)
    return {
        "general.name": name,
        "labmake.base_model": name,
        "labmake.base_model_sha256": sha,
    }


def student_inputs(student: StudentConfig) -> list[str]:
    """The files rule base_model reads besides params.yaml, checked first (StudentError): a
    Hugging Face student's files and the chat template file that overrides its own."""
    template = Path(student.chat_template) if student.chat_template else None
    files: list[str] = []
    if student.hf is not None:
        check_folder(Path(student.hf), template)
        files = [str(p) for p in source_files(Path(student.hf))]
    elif template is not None:
        chat_template.read_template_file(template)
    return files + ([str(template)] if template is not None else [])


def check_tokenizer(folder: Path) -> None:
    """StudentError unless the folder's tokenizer can be written as GGUF metadata that llama.cpp
    splits exactly as transformers does (it loads the tokenizer: seconds, not milliseconds)."""
    import tempfile

    from labmake.export.families import ExportError
    from labmake.export.tokenizer import write_hf_tokenizer_gguf
    from labmake.training.space_prefix import use_llama_cpp_prefix

    config = chat_template._read_json(Path(folder) / "config.json")
    arch = _check_family(config, Path(folder) / "config.json")
    with tempfile.TemporaryDirectory(prefix="labmake-tok-") as work:
        # The tokenizer as the base folder will hold it (build_base).
        for name in TOKENIZER_FILES:
            if (Path(folder) / name).is_file():
                shutil.copyfile(Path(folder) / name, Path(work) / name)
        try:
            use_llama_cpp_prefix(Path(work))
            write_hf_tokenizer_gguf(Path(work), Path(work) / TOKENIZER_GGUF, arch)
        except ExportError as exc:
            said = str(exc).replace(work, str(folder))  # the user's folder, not the copy
            raise StudentError(
                f"student.hf: {said}; llama.cpp would read the exported model's text differently "
                "from how it was trained"
            ) from None
        except Exception as exc:  # noqa: BLE001 (a damaged file fails in many ways in transformers)
            raise StudentError(
                f"student.hf: {folder}: transformers cannot load the tokenizer ({exc!r}); copy "
                "the model's tokenizer files into the folder again"
            ) from None


def student_files(student: StudentConfig) -> list[Path]:
    """The files params.yaml's student reads that exist, unchecked (what `labmake build`'s
    nothing-changed test watches): a Hugging Face folder's, the chat template, the GGUF."""
    found = [Path(p) for p in (student.gguf, student.chat_template) if p]
    folder = Path(student.hf) if student.hf else None
    if folder is not None and folder.is_dir():
        names = {*MODEL_FILES, *TOKENIZER_FILES, WEIGHTS_INDEX}
        found += [p for p in folder.iterdir() if p.name in names or p.suffix == ".safetensors"]
    return sorted(p for p in found if p.is_file())
