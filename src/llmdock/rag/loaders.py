"""Reading source files into titled sections: plain text, Markdown, HTML and PDF.

Each loader keeps the document's structure as heading paths (Markdown and HTML headings, PDF page numbers),
which the chunker carries onto every chunk as metadata. A file that cannot be read as text raises
:class:`Unreadable` with a one-line reason; the ingest skips it and goes on with the rest.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

KINDS = {
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
BLOCKS = (*HEADINGS, "p", "div", "li", "pre", "dt", "dd", "tr", "br", "section", "table", "blockquote")
DROPPED_HTML = ("script", "style", "nav", "header", "footer", "noscript", "template")
SNIFF_BYTES = 8192
MARK = "\ue000"  # a private-use character marks headings in flattened HTML text


class Unreadable(Exception):
    """Why a file was skipped, in one line."""


@dataclass(frozen=True)
class Section:
    headings: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Loaded:
    kind: str
    title: str
    sections: list[Section]


def kind_of(path: Path, data: bytes) -> str:
    """The loader for a file: by suffix; an unknown suffix is read as text unless the bytes are binary."""
    kind = KINDS.get(path.suffix.lower())
    if kind is not None:
        return kind
    if b"\0" in data[:SNIFF_BYTES]:
        raise Unreadable("binary file (not text, Markdown, HTML or PDF)")
    return "text"


def load(path: Path, data: bytes) -> Loaded:
    """Parse ``data`` (the bytes of ``path``); raise :class:`Unreadable` when it holds no usable text."""
    if not data.strip():
        raise Unreadable("empty file")
    kind = kind_of(path, data)
    if kind == "pdf":
        loaded = _pdf(data)
    elif kind == "html":
        loaded = _html(data)
    else:
        text = _decode(data)
        loaded = _markdown(text) if kind == "markdown" else Loaded("text", "", [Section((), text)])
    sections = [s for s in loaded.sections if s.text.strip()]
    if not sections:
        raise Unreadable(f"no text in this {kind} file")
    return Loaded(loaded.kind, loaded.title or path.stem, sections)


def _decode(data: bytes) -> str:
    if b"\0" in data[:SNIFF_BYTES]:
        raise Unreadable("binary file (NUL bytes in a text file)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unreadable(
            f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}): convert it to UTF-8"
        ) from None


def _markdown(text: str) -> Loaded:
    """Sections between ATX or setext headings, as markdown-it parses them (not inside code fences)."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(text)
    lines = text.splitlines(keepends=True)
    marks: list[tuple[int, int, int, str]] = []  # (first line, line after the heading, level, text)
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.map is not None:
            marks.append((tok.map[0], tok.map[1], int(tok.tag[1]), tokens[i + 1].content.strip()))
    sections = [Section((), "".join(lines[: marks[0][0] if marks else len(lines)]))]
    path: list[tuple[int, str]] = []
    for n, (_, after, level, heading) in enumerate(marks):
        path = [*(p for p in path if p[0] < level), (level, heading)]
        end = marks[n + 1][0] if n + 1 < len(marks) else len(lines)
        sections.append(Section(tuple(h for _, h in path), "".join(lines[after:end])))
    title = next((h for _, _, level, h in marks if level == 1), "")
    return Loaded("markdown", title, sections)


def _html(data: bytes) -> Loaded:
    """The main content's text, cut at every heading (Sphinx's ``¶`` permalinks dropped)."""
    import lxml.html
    from lxml import etree

    try:
        root = lxml.html.document_fromstring(data)
    except (etree.ParserError, ValueError) as exc:
        raise Unreadable(f"unreadable HTML: {exc}") from None
    title = " ".join((root.findtext(".//title") or "").split())
    main = next(iter(root.xpath('//*[@role="main"] | //main | //article')), None)
    body = main if main is not None else root.find("body")
    if body is None:
        return Loaded("html", title, [])
    for el in body.xpath(".//*[@class='headerlink'] | " + " | ".join(f".//{t}" for t in DROPPED_HTML)):
        el.drop_tree()
    # Headings become markers in the flattened text; block elements end their line.
    for el in body.iter(*BLOCKS):
        if el.tag in HEADINGS:
            label = " ".join(el.text_content().split())
            for child in list(el):
                el.remove(child)
            el.text = f"{MARK}{el.tag[1]}{label}{MARK}"
        el.tail = "\n" + (el.tail or "")
    flat = body.text_content()
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    parts = flat.split(MARK)
    sections.append(Section((), parts[0]))
    for marker, text in zip(parts[1::2], parts[2::2], strict=False):
        level, heading = int(marker[0]), marker[1:]
        path = [*(p for p in path if p[0] < level), (level, heading)]
        sections.append(Section(tuple(h for _, h in path), text))
    return Loaded("html", title, [Section(s.headings, _squeeze(s.text)) for s in sections])


def _squeeze(text: str) -> str:
    """Blank runs of lines collapsed to one blank line (HTML layout whitespace)."""
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def _pdf(data: bytes) -> Loaded:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings repeat what Unreadable says

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise Unreadable("encrypted PDF (needs a password)")
        title = str(reader.metadata.get("/Title") or "") if reader.metadata else ""
        pages = [Section((f"page {n}",), page.extract_text() or "") for n, page in enumerate(reader.pages, 1)]
    except Unreadable:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise Unreadable(f"unreadable PDF: {exc}") from None
    except NotImplementedError as exc:  # pypdf's unsupported encryption algorithms
        raise Unreadable(f"encrypted PDF pypdf cannot open: {exc}") from None
    if not any(p.text.strip() for p in pages):
        raise Unreadable("PDF without a text layer (scanned pages need OCR first)")
    return Loaded("pdf", title, pages)
