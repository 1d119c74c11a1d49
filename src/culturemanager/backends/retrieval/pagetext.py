"""Turning a fetched page's bytes into text: charset, title, main text and language.

Pure functions of the bytes or the decoded string; no network. fetch.SafeFetcher uses them on every page it reads.
- `parse_content_type(header)`: ("text/html", "utf-8") from a Content-Type header.
- `decode_body(body, charset, html=...)`: the charset comes from a BOM, the header, a `<meta>` charset in the
  first bytes, UTF-8, then detection (charset_normalizer); labels are mapped as browsers do (latin-1 -> cp1252).
- `html_title(html)`, `extract_text(html, url)`: the `<title>`, and the main text from trafilatura (falling back
  to all visible text, `html_to_text`, which local corpus files use too).
- `detect_language(text)`: ISO 639-1 code from py3langid, None when unsure.
Heavy libraries (trafilatura, charset_normalizer, py3langid) are imported on first use.

Use: `from culturemanager.backends.retrieval.pagetext import decode_body, extract_text, detect_language`, e.g.
`detect_language(extract_text(decode_body(raw, None, html=True)))`.
"""

from __future__ import annotations

import codecs
import re
import threading
from html import unescape
from html.parser import HTMLParser
from typing import Any

from culturemanager.backends.textsignals import TO_ISO639_1

# ---------------------------------------------------------------------------------- bytes to text

_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# What browsers actually decode these labels as (WHATWG Encoding Standard).
_BROWSER_CODECS = {"iso8859-1": "cp1252", "ascii": "cp1252", "iso8859-9": "cp1254", "gb2312": "gb18030",
                   "gbk": "gb18030", "shift_jis": "cp932", "euc_kr": "cp949"}


def parse_content_type(header: str) -> tuple[str, str | None]:
    """("text/html", "utf-8") from 'text/html; charset="UTF-8"'."""
    mime, *params = header.split(";")
    charset = None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip("\"'") or None
    return mime.strip().lower(), charset


def decode_body(body: bytes, header_charset: str | None, *, html: bool, truncated: bool = False) -> str:
    """BOM, then the header's charset, then a <meta> charset (HTML), then UTF-8, then detection."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body.decode(encoding, errors="replace")
    encoding = _codec(header_charset)
    if encoding is None and html:
        match = _META_CHARSET.search(body[:4096])
        encoding = _codec(match.group(1).decode("ascii"), from_meta=True) if match else None
    if encoding is not None:
        return body.decode(encoding, errors="replace")
    try:  # incremental: a multi-byte character cut by truncation is not an error
        return codecs.getincrementaldecoder("utf-8")().decode(body, final=not truncated)
    except UnicodeDecodeError:
        pass
    import charset_normalizer

    best = charset_normalizer.from_bytes(body).best()
    return body.decode(best.encoding if best is not None else "utf-8", errors="replace")


def _codec(label: str | None, from_meta: bool = False) -> str | None:
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip()).name
        b"".decode(name)  # refuses non-text codecs such as zlib or base64
    except (LookupError, ValueError):
        return None
    if from_meta and name.startswith(("utf-16", "utf-32")):
        return "utf-8"  # a document that could be scanned for <meta> as ASCII is not UTF-16
    return _BROWSER_CODECS.get(name, name)


def html_title(html: str) -> str:
    match = re.search(r"<title[^>]*>(.*?)</title\s*>", html[:200_000], re.IGNORECASE | re.DOTALL)
    return " ".join(unescape(match.group(1)).split()) if match else ""


def extract_text(html: str, url: str | None = None) -> str:
    """The page's main text (trafilatura); all visible text when trafilatura finds none."""
    import trafilatura

    text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True, deduplicate=False)
    if text and text.strip():
        return text.strip()
    return html_to_text(html)[1].replace("\n\n", "\n")


def html_to_text(html: str) -> tuple[str, str]:
    """(title, visible text) of an HTML page, without scripts, styles and other invisible elements; block
    elements become paragraphs separated by blank lines. The one HTML-to-text parser of the package: local
    corpus files and the fallback of fetched pages both use it."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", "".join(parser.parts)))
    return " ".join(parser.title.split()), "\n\n".join(p for p in paragraphs if p)


class _VisibleText(HTMLParser):
    SKIP = frozenset({"script", "style", "noscript", "template", "title", "svg", "iframe", "object", "textarea"})
    BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
                       "header", "footer", "blockquote", "pre", "table", "ul", "ol", "dd", "dt"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._open: list[str] = []  # skipped elements (and <title>) we are inside

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._open.append(tag)
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            while self._open and self._open.pop() != tag:  # unclosed inner elements end with their parent
                pass
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._open:
            self.parts.append(data)
        elif self._open[-1] == "title":
            self.title += data


# ------------------------------------------------------------------------------------------ language

_identifier: Any = None
_identifier_lock = threading.Lock()


def detect_language(text: str, min_confidence: float = 0.5) -> str | None:
    """ISO 639-1 code of `text` (its first 2,000 characters), or None when py3langid is unsure."""
    global _identifier
    with _identifier_lock:
        if _identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    lang, confidence = _identifier.classify(text[:2000])
    lang = TO_ISO639_1.get(lang, lang)
    return lang if confidence >= min_confidence and len(lang) == 2 else None
