"""PDF, Word and HTML through docling (``seeds.converter: docling``; the ``docling`` extra).

docling is InstructLab's converter: it reads a PDF's layout (reading order, tables, headings)
with models of its own. labmake never lets it download them at build time (the Hugging Face hub
is set offline in this child process): for PDF the models must be on disk, in the folder
``seeds.docling_models`` names. Word and HTML need no model. OCR is off (scans are refused, as
with the builtin converter).
"""

from __future__ import annotations

import io
import os

from labmake.taxonomy.formats.errors import UnreadableDocument

_INSTALL = (
    "pip install 'labmake[docling]' in the build's environment, or set seeds.converter: builtin"
)
_MODELS = (
    "download docling's models once (docling-tools models download -o FOLDER) and set "
    "seeds.docling_models to FOLDER, or set seeds.converter: builtin"
)


def docling_to_markdown(fmt: str, data: bytes, models: str | None) -> str:
    os.environ["HF_HUB_OFFLINE"] = "1"  # a model missing on disk is an error, never a download
    try:
        from docling.datamodel.base_models import DocumentStream, InputFormat
        from docling.datamodel.pipeline_options import PdfPipelineOptions
        from docling.document_converter import DocumentConverter, PdfFormatOption
    except ImportError:
        raise UnreadableDocument("needs docling, which is not installed", _INSTALL) from None
    if fmt == "pdf" and not models:
        raise UnreadableDocument("needs docling's PDF models, and none are named", _MODELS)
    options = PdfPipelineOptions(artifacts_path=models, do_ocr=False)
    converter = DocumentConverter(
        format_options={InputFormat.PDF: PdfFormatOption(pipeline_options=options)}
    )
    stream = DocumentStream(name=f"document.{fmt}", stream=io.BytesIO(data))
    try:
        result = converter.convert(stream, raises_on_error=True)
    except Exception as exc:  # docling raises many kinds: a damaged file, a missing model
        detail = " ".join(str(exc).split())[:160]
        hint = (
            _MODELS
            if fmt == "pdf" and "snapshot" in detail.lower()
            else ("open it in its editor and save it again, or set seeds.converter: builtin")
        )
        raise UnreadableDocument(
            f"cannot be converted by docling ({type(exc).__name__}: {detail})", hint
        ) from None
    return result.document.export_to_markdown()
