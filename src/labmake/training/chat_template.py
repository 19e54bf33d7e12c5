"""The student's chat template: its own, or the operator's ``student.chat_template`` file.

The template renders the training conversations (:mod:`labmake.training.data`) and goes into
every exported GGUF (``tokenizer.chat_template``), so ``labmake chat`` and llama.cpp's server
talk to the model in the format it was tuned on. It is rendered as transformers renders it (a
sandboxed Jinja2 environment): the check here fails before a build what would fail in training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labmake.core import artifacts
from labmake.core.models import StudentError
from labmake.core.paths import BASE_MARKER

# transformers 5 saves the template in this file; older versions in tokenizer_config.json.
TEMPLATE_FILE = "chat_template.jinja"
LEGACY_TEMPLATE_FILE = "chat_template.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SAMPLE = [
    {"role": "user", "content": "What makes rain fall?"},
    {"role": "assistant", "content": "Water droplets in clouds grow heavy and fall."},
]


def folder_template(folder: Path) -> str | None:
    """The chat template a Hugging Face folder carries (``chat_template.jinja``,
    ``chat_template.json`` or ``tokenizer_config.json``'s key), or None."""
    folder = Path(folder)
    if (folder / TEMPLATE_FILE).is_file():
        return (folder / TEMPLATE_FILE).read_text(encoding="utf-8")
    for name in (LEGACY_TEMPLATE_FILE, TOKENIZER_CONFIG):
        if (folder / name).is_file():
            template = _read_json(folder / name).get("chat_template")
            if isinstance(template, str) and template:
                return template
    return None


def install_template(folder: Path, template: str) -> None:
    """Make ``template`` the chat template of the tokenizer saved in ``folder``: written as
    ``chat_template.jinja``, every other copy removed, so transformers (and the merged folder
    and GGUF after it) read this one."""
    folder = Path(folder)
    (folder / LEGACY_TEMPLATE_FILE).unlink(missing_ok=True)
    config_path = folder / TOKENIZER_CONFIG
    if config_path.is_file():
        config = _read_json(config_path)
        if "chat_template" in config:
            del config["chat_template"]
            config_path.write_text(
                json.dumps(config, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                encoding="utf-8",
            )
    (folder / TEMPLATE_FILE).write_text(template, encoding="utf-8")


def override_template(base_dir: Path, template: Path) -> None:
    """Give a base folder the chat template in file ``template`` (checked first) and record it
    in its labmake_base.json, rewritten last."""
    base_dir = Path(base_dir)
    text = read_template_file(template, special_tokens(base_dir))
    install_template(base_dir, text)
    marker = artifacts.read_json(base_dir / BASE_MARKER)
    marker["chat_template"] = Path(template).name
    marker["chat_template_sha256"] = artifacts.sha256_file(template)
    artifacts.write_json(base_dir / BASE_MARKER, marker)


def read_template_file(path: Path, tokens: dict[str, str] | None = None) -> str:
    """The text of a ``student.chat_template`` file, checked with :func:`check_template`."""
    path = Path(path)
    if not path.is_file():
        raise StudentError(
            f"params.yaml: student.chat_template: {path}: no such file; give the path (relative "
            "to the repository root) of a Jinja chat template, or null for the student's own"
        )
    try:
        template = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StudentError(
            f"student.chat_template: {path}: cannot be read as text ({exc})"
        ) from None
    check_template(template, str(path), tokens or {})
    return template


def check_template(template: str, where: str, tokens: dict[str, str]) -> None:
    """Render a user/assistant conversation with ``template`` as transformers would; StudentError
    unless it renders, holds the assistant's text, and adding a turn only appends text (what
    training relies on to find the assistant's tokens)."""
    try:
        prompt = _render(template, SAMPLE[:1], True, tokens)
        full = _render(template, SAMPLE, False, tokens)
    except Exception as exc:  # noqa: BLE001 (any template error is the template's fault)
        raise StudentError(
            f"{where}: the chat template does not render a user/assistant conversation "
            f"({type(exc).__name__}: {exc}); fix the template (it is rendered in a sandbox with "
            "messages, add_generation_prompt, bos_token and eos_token)"
        ) from None
    answer = SAMPLE[1]["content"]
    if answer not in full or SAMPLE[0]["content"] not in full:
        raise StudentError(
            f"{where}: the chat template leaves the conversation's text out (rendering a user "
            "question and an assistant answer does not contain both); it must write each "
            "message's content"
        )
    if not full.startswith(prompt) or answer not in full[len(prompt) :]:
        raise StudentError(
            f"{where}: the chat template is not prefix-stable: the rendered prompt with "
            "add_generation_prompt is not the start of the rendered conversation, so training "
            "cannot find the assistant's tokens; write the generation prompt as the start of "
            "the assistant's turn"
        )


def special_tokens(folder: Path) -> dict[str, str]:
    """bos_token, eos_token, ... as tokenizer_config.json names them (for rendering checks)."""
    config_path = Path(folder) / TOKENIZER_CONFIG
    config = _read_json(config_path) if config_path.is_file() else {}
    out = {}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            out[key] = value
    return out


def _render(
    template: str, messages: list[dict[str, str]], generation: bool, tokens: dict[str, str]
) -> str:
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    # The environment transformers renders chat templates in.
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(
        x, indent=indent, ensure_ascii=False
    )
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: "01 Jan 2025"
    values = {"bos_token": "", "eos_token": "", **tokens}
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=generation, **values
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StudentError(
            f"{path}: not readable JSON ({exc}); the model folder is damaged"
        ) from None
    if not isinstance(data, dict):
        raise StudentError(f"{path}: not a JSON object; the model folder is damaged")
    return data
