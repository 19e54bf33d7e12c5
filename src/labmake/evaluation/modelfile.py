"""An Ollama ``Modelfile`` for the build's best-answering GGUF.

Ollama reads a Go template, not the Jinja chat template stored in the GGUF, so the turn format
is recognised from the GGUF's own template (its turn markers) and written in Go template syntax
with the format's stop tokens. A template of another shape gets no ``TEMPLATE`` line: Ollama
then falls back to what it detects in the GGUF, and the file says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Go templates of the turn formats labmake's families use, with their stop tokens. Each renders
# the messages in order and ends with the model's turn open, as the Jinja templates do with
# add_generation_prompt. Gemma has no system turn: like Ollama's own Gemma template, a system
# message is given as a user turn.
FORMATS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "gemma": (
        "<start_of_turn>",
        """{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if or (eq .Role "user") (eq .Role "system") }}<start_of_turn>user
{{ .Content }}<end_of_turn>
{{ if $last }}<start_of_turn>model
{{ end }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}{{ if not $last }}<end_of_turn>
{{ end }}
{{- end }}
{{- end }}""",
        ("<end_of_turn>",),
    ),
    "chatml": (
        "<|im_start|>",
        """{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}<|im_start|>{{ .Role }}
{{ .Content }}{{ if or (ne .Role "assistant") (not $last) }}<|im_end|>
{{ end }}
{{- if and $last (ne .Role "assistant") }}<|im_start|>assistant
{{ end }}
{{- end }}""",
        ("<|im_start|>", "<|im_end|>"),
    ),
    "llama3": (
        "<|start_header_id|>",
        """{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}{{ if or (ne .Role "assistant") (not $last) }}<|eot_id|>{{ end }}
{{- if and $last (ne .Role "assistant") }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- end }}""",
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    ),
}


def turn_format(chat_template: str | None) -> str | None:
    """The turn format of a GGUF's Jinja chat template, by its markers (None: unknown)."""
    if not chat_template:
        return None
    return next((name for name, (marker, _, _) in FORMATS.items() if marker in chat_template), None)


def best_gguf(ggufs: Sequence[Mapping[str, Any]], report: Mapping[str, Any]) -> dict[str, Any]:
    """The GGUF with the highest overall token F1 on the held-out items (the smaller file on
    a tie); the first file when no GGUF was scored."""
    f1 = report.get("overall", {}).get("token_f1", {}).get("models", {})
    scored = [
        (f1[f"gguf-{g['quant']}"]["mean"], -g["bytes"], g)
        for g in ggufs
        if f1.get(f"gguf-{g['quant']}", {}).get("mean") is not None
    ]
    if not scored:
        return {**ggufs[0], "why": "no GGUF was scored"} if ggufs else {}
    mean, _, g = max(scored, key=lambda t: (t[0], t[1]))
    return {**g, "why": f"mean token F1 {mean:.3f}, the highest of the {len(scored)} files"}


def modelfile(chosen: Mapping[str, Any], chat_template: str | None, meta: Mapping[str, Any]) -> str:
    fmt = turn_format(chat_template)
    licence = str(meta.get("general.license", "") or "")
    lines = [
        f"# Ollama Modelfile for {meta.get('general.name', 'this model')}, written by labmake.",
        "# ollama create my-model -f Modelfile && ollama run my-model",
        f"# {chosen.get('file', 'model.gguf')}: {chosen.get('why', '')}; any other GGUF here can",
        "# replace it in FROM.",
        f"FROM ./{chosen.get('file', 'model.gguf')}",
        "",
    ]
    if fmt is None:
        lines += [
            "# The GGUF's chat template has no turn format labmake knows, so no TEMPLATE is",
            "# given: Ollama uses the one it detects in the GGUF.",
            "",
        ]
    else:
        _, template, stops = FORMATS[fmt]
        lines += [f'TEMPLATE """{template}"""', ""]
        lines += [f'PARAMETER stop "{stop}"' for stop in stops]
        lines.append("")
    if licence == "gemma":
        lines += [
            'LICENSE """This model is a derivative of a Gemma model. Gemma is provided under and',
            'subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms."""',
            "",
        ]
    elif licence:
        lines += [f'LICENSE """The base model\'s licence applies: {licence}."""', ""]
    return "\n".join(lines)
