"""Where the build reads from: the taxonomy, the student and the teacher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from labmake.core.params_checks import check_student, check_teacher
from labmake.core.schema import param

QUANTIZATIONS = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_0", "Q4_K_M", "Q4_0")
NAME_PATTERN = r"^[A-Za-z0-9_-]+\Z"  # \Z: "$" would let a trailing newline through
PUBLIC_HTTPS = "public-https"  # document_sources: https URLs of public hosts


@dataclass(frozen=True)
class TaxonomyConfig:
    root: str = param("taxonomy", help="the taxonomy's root folder", empty=False)
    # The operator's allowlist: a contributed leaf must not read the build host's own files or
    # private network (labmake.taxonomy.document_sources).
    document_sources: tuple[str, ...] = param(
        (PUBLIC_HTTPS,),
        help="where a leaf's document.repo may be fetched from: public-https, URL prefixes, "
        "local folders; [] for none",
        item={"empty": False},
    )


@dataclass(frozen=True)
class StudentConfig:
    gguf: str | None = param(
        None, help="the student GGUF; null: the embedded Gemma 3 270M base", empty=False
    )
    hf: str | None = param(
        None,
        help="instead of gguf: a local Hugging Face model folder (config.json, safetensors, "
        "tokenizer); never downloaded",
        empty=False,
    )
    chat_template: str | None = param(
        None,
        help="a Jinja chat template file that replaces the student's own; training data and the "
        "exported GGUFs use it",
        empty=False,
    )

    def __post_init__(self) -> None:
        check_student(self)


@dataclass(frozen=True)
class TeacherConfig:
    SECTION: ClassVar[str] = "teacher"  # messages name keys teacher.*; evaluate.judge.* there
    backend: str = param(
        "llama-cpp",
        help="llama-cpp (a GGUF run in-process) or openai (an OpenAI-compatible server)",
        regex=r"^[a-z][a-z0-9-]*$",
    )
    gguf: str | None = param(
        None,
        help="llama-cpp (and serve's {gguf}): the teacher GGUF; null: the embedded Gemma 3 270M",
        empty=False,
    )
    n_ctx: int = param(2048, help="tokens one request may fill: prompt + max_tokens", min=256)
    n_threads: int = param(2, help="CPU threads of the llama-cpp teacher", min=1)
    # A GPU's answers may differ from the CPU's: when not 0 it is part of the request-cache keys.
    n_gpu_layers: int = param(
        0,
        help="llama-cpp: layers llama.cpp puts on the GPU (0: CPU only, -1: all); not 0: the "
        "jobs running it ask for one (resource gpu=1)",
        min=-1,
    )
    n_parallel: int = param(8, help="sequences decoded together in one batch", min=1, max=64)
    temperature: float = param(0.7, help="sampling temperature", min=0.0)
    top_p: float = param(0.95, help="nucleus sampling", min=0.0, max=1.0)
    repeat_penalty: float = param(1.1, help="llama-cpp only (not in the OpenAI API)", min=0.0)
    max_tokens: int = param(160, help="per request; generation also stops at delimiters", min=8)
    base_url: str | None = param(
        None, help="openai: e.g. http://127.0.0.1:8000/v1", regex=r"^https?://.+"
    )
    model: str | None = param(
        None,
        help="openai: the server's model name (with serve, null: 'served', which llama.cpp's "
        "server answers to; vLLM wants its own, e.g. the path it serves)",
        empty=False,
    )
    api_key_env: str | None = param(
        None,
        help="openai: the NAME of the environment variable holding the key (never the key)",
        regex=r"^[A-Za-z_][A-Za-z0-9_]*$",
    )
    chat: bool = param(False, help="openai: /chat/completions with the prompt as one user turn")
    timeout_s: float = param(120.0, help="openai: seconds per HTTP request", min=0.1)
    max_retries: int = param(
        5, help="openai: retries on 429/5xx/timeouts/dropped connections", min=0, max=20
    )
    concurrency: int = param(4, help="openai: requests in flight at once", min=1, max=256)
    # The operator's command, never a leaf's: it runs on the build host (labmake.teacher.served).
    serve: tuple[str, ...] | None = param(
        None,
        help="openai: an OpenAI-compatible server labmake starts, waits for and stops itself, "
        "as a list (its argv); {port}: a free port on 127.0.0.1 it picks, {gguf}: teacher.gguf "
        "or the embedded model; base_url stays null",
        item={"empty": False},
        minlength=1,
    )

    def __post_init__(self) -> None:
        check_teacher(self)
