"""A small PDF writer: text documents with headings, paragraphs and pages.

Enough for an export that opens in every viewer, in pure Python: the standard
Helvetica fonts (no font files), WinAnsi text, line wrapping from the fonts'
real glyph widths, and a correct cross-reference table.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone

__all__ = ["PdfDocument"]

PAGE_WIDTH, PAGE_HEIGHT = 595.0, 842.0  # A4 in points
MARGIN = 56.0

# Helvetica advance widths (1/1000 em) for ' ' to '~', from the font's AFM.
_WIDTHS = (
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
)  # fmt: skip
# Helvetica-Bold is slightly wider; wrapping with this margin never overflows.
_BOLD_FACTOR = 1.08


def text_width(text: str, size: float, *, bold: bool = False) -> float:
    units = sum(_WIDTHS[ord(c) - 32] if " " <= c <= "~" else 556 for c in text)
    return units * size / 1000 * (_BOLD_FACTOR if bold else 1.0)


def wrap(text: str, size: float, width: float, *, bold: bool = False) -> list[str]:
    """Split ``text`` into lines no wider than ``width`` points (long words are cut)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if text_width(candidate, size, bold=bold) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while text_width(word, size, bold=bold) > width:
                cut = len(word)
                while cut > 1 and text_width(word[:cut], size, bold=bold) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def _literal(text: str) -> bytes:
    """A PDF string literal in WinAnsi; characters it cannot hold become '?'."""
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _text_string(text: str) -> bytes:
    """A PDF text string (document information): UTF-16BE with a byte-order mark."""
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode() + b">"


@dataclass
class _Line:
    text: str
    size: float
    bold: bool
    gap_before: float
    grey: bool = False


class PdfDocument:
    """Collects text, then :meth:`render` lays it out on A4 pages.

    .. code-block:: python

        doc = PdfDocument("Trip to Kenya")
        doc.heading("Stops")
        doc.paragraph("Nairobi: exercise increased caution.")
        pdf_bytes = doc.render()
    """

    def __init__(self, title: str, subtitle: str | None = None) -> None:
        self.title = title
        self._lines: list[_Line] = []
        self._add(title, 18, bold=True, gap=0)
        if subtitle:
            self._add(subtitle, 10, bold=False, gap=4, grey=True)

    def _add(self, text: str, size: float, *, bold: bool, gap: float, grey: bool = False) -> None:
        width = PAGE_WIDTH - 2 * MARGIN
        for i, line in enumerate(wrap(text, size, width, bold=bold)):
            self._lines.append(_Line(line, size, bold, gap if i == 0 else 0, grey))

    def heading(self, text: str) -> None:
        self._add(text, 13, bold=True, gap=14)

    def paragraph(self, text: str) -> None:
        self._add(text, 10.5, bold=False, gap=5)

    def field(self, label: str, value: object) -> None:
        self._add(f"{label}: {value}", 10.5, bold=False, gap=2)

    def _pages(self) -> list[bytes]:
        pages: list[bytes] = []
        ops: list[bytes] = []
        y = PAGE_HEIGHT - MARGIN
        for line in self._lines:
            leading = line.size * 1.35
            if y - line.gap_before - leading < MARGIN and ops:
                pages.append(b"\n".join(ops))
                ops, y = [], PAGE_HEIGHT - MARGIN
            y -= line.gap_before + leading
            font = b"/F2" if line.bold else b"/F1"
            colour = b"0.4 g" if line.grey else b"0 g"
            ops.append(
                b"BT %s %s %.1f Tf %.2f %.2f Td %s Tj ET"
                % (colour, font, line.size, MARGIN, y, _literal(line.text))
            )
        pages.append(b"\n".join(ops))
        total = len(pages)
        return [
            page
            + b"\nBT 0.5 g /F1 8 Tf %.2f %.2f Td %s Tj ET"
            % (MARGIN, MARGIN / 2, _literal(f"{self.title}  -  page {n} of {total}"))
            for n, page in enumerate(pages, 1)
        ]

    def render(self, *, created: datetime | None = None) -> bytes:
        """The document as PDF 1.4 bytes."""
        created = created or datetime.now(timezone.utc)
        pages = self._pages()
        # Objects: 1 catalog, 2 page tree, 3-4 fonts, 5 info, then page + content pairs.
        first_page = 6
        kids = b" ".join(b"%d 0 R" % (first_page + 2 * i) for i in range(len(pages)))
        objects: list[bytes] = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold "
            b"/Encoding /WinAnsiEncoding >>",
            b"<< /Title %s /Producer (Sentinel) /CreationDate (D:%s) >>"
            % (_text_string(self.title), created.strftime("%Y%m%d%H%M%SZ").encode()),
        ]
        for i, content in enumerate(pages):
            content_ref = first_page + 2 * i + 1
            objects.append(
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] "
                b"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents %d 0 R >>"
                % (PAGE_WIDTH, PAGE_HEIGHT, content_ref)
            )
            stream = zlib.compress(content)
            objects.append(
                b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream"
                % (len(stream), stream)
            )
        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, body in enumerate(objects, 1):
            offsets.append(len(out))
            out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
        out += b"trailer\n<< /Size %d /Root 1 0 R /Info 5 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
            len(objects) + 1,
            xref,
        )
        return bytes(out)
