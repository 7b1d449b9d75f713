"""The PDF exports print every script a traveller's places are written in."""

from __future__ import annotations

import io
import logging

from pypdf import PdfReader

from examples.sentinel.pdf import PdfDocument

PLACES = ["Łódź", "Київ", "東京"]
TRIP = {
    "title": "Łódź – Київ – 東京",
    "waypoints": [
        {"name": "Łódź", "country": "PL"},
        {"name": "Київ", "country": "UA"},
        {"name": "東京", "country": "JP"},
    ],
}


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_place_names_in_latin_cyrillic_and_cjk_print_as_written(make_caller, pdf_font):
    pro = make_caller("pro")
    itinerary = pro.post("/itineraries", json={"data": TRIP}).get_json()["id"]
    pdf = pro.get(f"/itineraries/{itinerary}/export.pdf").data
    text = text_of(pdf)
    for number, place in enumerate(PLACES, 1):
        assert f"{number}. {place}" in text
    assert TRIP["title"] in text
    # Only the glyphs used are embedded: the font file is 5 MB, the export is small.
    assert len(pdf) < 60_000


def test_a_long_text_wraps_and_flows_onto_numbered_pages(pdf_font):
    doc = PdfDocument("Notes", "a long conversation", font=pdf_font)
    for n in range(60):
        doc.heading(f"{n}. 東京 → Київ")
        doc.paragraph("Take the night train from Łódź; " * 12 + "東京での乗り換え" * 10)
    reader = PdfReader(io.BytesIO(doc.render()))
    assert len(reader.pages) > 3
    last = reader.pages[-1].extract_text()
    assert f"Notes - page {len(reader.pages)} of {len(reader.pages)}" in last.replace("  ", " ")
    assert reader.metadata.title == "Notes"


def test_without_the_font_the_pdf_still_renders_and_says_why(
    make_caller, sentinel_app, tmp_path, caplog
):
    sentinel_app.config["SENTINEL_PDF_FONT"] = tmp_path / "no-such-font.ttf"
    pro = make_caller("pro")
    itinerary = pro.post("/itineraries", json={"data": TRIP}).get_json()["id"]
    with caplog.at_level(logging.WARNING, logger="sentinel"):
        for _ in range(2):
            response = pro.get(f"/itineraries/{itinerary}/export.pdf")
            assert response.status_code == 200
    text = text_of(response.data)
    assert "1. ?ód?" in text and "2. ????" in text and "3. ??" in text
    warnings = [r.getMessage() for r in caplog.records if "no-such-font" in r.getMessage()]
    assert len(warnings) == 1  # said once, not on every export
    assert "fonts-wqy-microhei" in warnings[0] and "SENTINEL_PDF_FONT" in warnings[0]
