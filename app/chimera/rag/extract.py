"""Text out of uploaded documents: plain text and Markdown as they are, HTML through
BeautifulSoup (scripts, styles and markup dropped, block elements become paragraphs), PDF through
pypdf (one paragraph per page)."""

from __future__ import annotations

import io
from pathlib import PurePosixPath

from ..errors import BadRequest, UnsupportedMediaType

KINDS = {".txt": "text", ".text": "text", ".md": "text", ".markdown": "text", ".rst": "text", ".csv": "text",
         ".json": "text", ".htm": "html", ".html": "html", ".pdf": "pdf"}
MIME = {"text/plain": "text", "text/markdown": "text", "text/csv": "text", "application/json": "text",
        "text/html": "html", "application/xhtml+xml": "html", "application/pdf": "pdf"}
ACCEPTED = "txt, md, html, pdf"


def kind_of(filename: str, content_type: str | None, data: bytes) -> str:
    if data.startswith(b"%PDF-"):
        return "pdf"
    kind = KINDS.get(PurePosixPath(filename or "").suffix.lower())
    if kind is None and content_type:
        kind = MIME.get(content_type.split(";")[0].strip().lower())
    if kind is None:
        head = data[:512].lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html")):
            return "html"
        raise UnsupportedMediaType(f"cannot index {filename or 'this file'}: accepted types are {ACCEPTED}", param="file")
    return kind


def _decode(data: bytes, filename: str) -> str:
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise BadRequest(f"{filename or 'the file'} is not UTF-8 (or UTF-16 with a BOM) text", param="file") from None
    if "\x00" in text:
        raise BadRequest(f"{filename or 'the file'} looks binary, not text", param="file")
    return text


def _html(data: bytes) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    blocks = {"p", "div", "section", "article", "li", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote",
              "tr", "br", "table", "ul", "ol", "header", "footer", "main"}
    for tag in soup.find_all(blocks):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    return soup.get_text()


def _pdf(data: bytes, filename: str) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise BadRequest(f"{filename or 'the PDF'} is encrypted", param="file")
        pages = [page.extract_text() or "" for page in reader.pages]
    except BadRequest:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as e:
        raise BadRequest(f"{filename or 'the PDF'} could not be read as a PDF: {e}", param="file") from None
    if not reader.pages:
        raise BadRequest(f"{filename or 'the PDF'} has no pages", param="file")
    return "\n\n".join(pages)


def extract(data: bytes, filename: str, content_type: str | None = None) -> str:
    """The document's text; 400 for a corrupt document, 415 for a type we do not index."""
    if not data:
        raise BadRequest("the file is empty", param="file")
    kind = kind_of(filename, content_type, data)
    if kind == "pdf":
        text = _pdf(data, filename)
    elif kind == "html":
        text = _html(data)
    else:
        text = _decode(data, filename)
    if not text.strip():
        raise BadRequest(f"{filename or 'the file'} holds no text to index", param="file")
    return text
