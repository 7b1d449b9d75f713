"""PDF exports: text documents with headings, paragraphs and numbered pages.

Laid out by fpdf2, which embeds the part of a TrueType font that the document
uses. The font is WenQuanYi Micro Hei (Debian's ``fonts-wqy-microhei``,
``SENTINEL_PDF_FONT``): it covers Latin, Cyrillic and CJK, so place names such as
Łódź, Київ and 東京 print as written, and a document that uses a few of its
glyphs stays a few kilobytes. Without the font, the export still renders, in the
PDF viewers' built-in Helvetica, where text outside Western European scripts
shows as ``?``; a warning says so once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from datetime import timezone
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos
from fpdf.enums import YPos

__all__ = ["DEFAULT_FONT", "PdfDocument"]

logger = logging.getLogger("sentinel")

#: Where Debian's fonts-wqy-microhei puts the font (a collection: regular first).
DEFAULT_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
FAMILY = "sentinel"
FALLBACK_FAMILY = "helvetica"
MARGIN = 56.0  # points
INK, GREY, ACCENT = (17, 24, 39), (91, 100, 114), (67, 56, 202)

_warned: set[Path] = set()


class _Pages(FPDF):
    """An A4 document in points whose every page ends with its title and number."""

    def __init__(self, title: str, *, embedded: bool) -> None:
        super().__init__(unit="pt", format="A4")
        self.footer_text = title
        self.embedded = embedded
        self.text_family = FAMILY if embedded else FALLBACK_FAMILY

    def printable(self, text: str) -> str:
        """``text`` as the font can print it: the built-in fonts hold Latin-1 only."""
        return text if self.embedded else text.encode("latin-1", "replace").decode("latin-1")

    def footer(self) -> None:
        self.set_y(-MARGIN / 2 - 8)
        self.set_font(self.text_family, size=8)
        self.set_text_color(*GREY)
        self.cell(0, 10, self.printable(f"{self.footer_text}  -  page {self.page_no()} of {{nb}}"))


class PdfDocument:
    """Collects text, then :meth:`render` lays it out on A4 pages.

    .. code-block:: python

        doc = PdfDocument("Trip to Kenya")
        doc.heading("Stops")
        doc.paragraph("Nairobi: exercise increased caution.")
        pdf_bytes = doc.render()
    """

    def __init__(
        self, title: str, subtitle: str | None = None, *, font: Path = DEFAULT_FONT
    ) -> None:
        self.title = title
        self._font = font
        self._blocks: list[tuple[str, float, tuple[int, int, int], float]] = []
        self._add(title, 18, INK, gap=0)
        if subtitle:
            self._add(subtitle, 10, GREY, gap=4)

    def _add(self, text: str, size: float, colour: tuple[int, int, int], *, gap: float) -> None:
        self._blocks.append((text, size, colour, gap))

    def heading(self, text: str) -> None:
        self._add(text, 13, ACCENT, gap=14)

    def paragraph(self, text: str) -> None:
        self._add(text, 10.5, INK, gap=5)

    def field(self, label: str, value: object) -> None:
        self._add(f"{label}: {value}", 10.5, INK, gap=2)

    def _start(self) -> _Pages:
        """The document, with the font embedded when it can be."""
        problem = "is not there"
        if self._font.is_file():
            pages = _Pages(self.title, embedded=True)
            try:
                pages.add_font(FAMILY, fname=self._font)
                return pages
            except Exception as exc:  # whatever a broken font file raises: render without it
                problem = f"cannot be read ({exc})"
        if self._font not in _warned:
            _warned.add(self._font)
            logger.warning(
                "PDF exports: the font %s %s, so text outside Western European scripts "
                "prints as '?'; install Debian's fonts-wqy-microhei, or set "
                "SENTINEL_PDF_FONT to a TrueType font that covers your users' languages",
                self._font,
                problem,
            )
        return _Pages(self.title, embedded=False)

    def render(self, *, created: datetime | None = None) -> bytes:
        """The document as PDF bytes."""
        pages = self._start()
        pages.set_title(self.title)
        pages.set_creator("Sentinel")
        pages.set_creation_date(created or datetime.now(timezone.utc))
        pages.set_margins(MARGIN, MARGIN, MARGIN)
        pages.set_auto_page_break(True, margin=MARGIN)
        pages.add_page()
        for text, size, colour, gap in self._blocks:
            pages.set_font(pages.text_family, size=size)
            pages.set_text_color(*colour)
            if gap and pages.get_y() > pages.t_margin:
                pages.ln(gap)
            pages.multi_cell(
                0,
                size * 1.35,
                pages.printable(text),
                align="L",
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
        return bytes(pages.output())
