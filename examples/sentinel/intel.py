"""Sentinel's travel-safety knowledge: advisories, safe zones, analyst notes.

A small built-in data set stands in for the feeds a real service would buy; the
computations on it (distances, legs, risk, nearest safe places) are real.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COUNTRIES",
    "Country",
    "SafeZone",
    "advisory",
    "briefing",
    "distance_km",
    "nearest_safe_zones",
    "route_analysis",
]

#: Advisory levels, as most foreign ministries grade them.
LEVELS = {
    1: "exercise normal precautions",
    2: "exercise increased caution",
    3: "reconsider travel",
    4: "do not travel",
}


@dataclass(frozen=True)
class SafeZone:
    name: str
    kind: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Country:
    code: str
    name: str
    level: int
    summary: str
    emergency: str
    lat: float
    lon: float
    safe_zones: tuple[SafeZone, ...]
    analyst_note: str


def _zones(*zones: tuple[str, str, float, float]) -> tuple[SafeZone, ...]:
    return tuple(SafeZone(*z) for z in zones)


COUNTRIES: dict[str, Country] = {
    c.code: c
    for c in (
        Country(
            "FR",
            "France",
            2,
            "Demonstrations in large cities; pickpockets on transit.",
            "112",
            48.857,
            2.352,
            _zones(
                ("Hôtel-Dieu hospital, Paris", "hospital", 48.854, 2.349),
                ("Préfecture de police, Paris", "police", 48.855, 2.347),
                ("Hôpital de la Timone, Marseille", "hospital", 43.290, 5.402),
            ),
            "Strike calendars disrupt rail travel at short notice; book flexible tickets.",
        ),
        Country(
            "DE",
            "Germany",
            1,
            "Low risk; occasional transport strikes.",
            "112",
            52.520,
            13.405,
            _zones(
                ("Charité hospital, Berlin", "hospital", 52.526, 13.376),
                ("Klinikum rechts der Isar, Munich", "hospital", 48.137, 11.599),
            ),
            "Rail punctuality is low this season; allow buffers for connections.",
        ),
        Country(
            "IT",
            "Italy",
            2,
            "Petty theft in tourist areas; wildfires in summer.",
            "112",
            41.903,
            12.496,
            _zones(
                ("Policlinico Umberto I, Rome", "hospital", 41.906, 12.511),
                ("Ospedale Niguarda, Milan", "hospital", 45.510, 9.187),
            ),
            "Heat waves strain southern hospitals in July and August.",
        ),
        Country(
            "ES",
            "Spain",
            1,
            "Low risk; bag snatching in Barcelona and Madrid.",
            "112",
            40.417,
            -3.704,
            _zones(
                ("Hospital La Paz, Madrid", "hospital", 40.481, -3.687),
                ("Hospital del Mar, Barcelona", "hospital", 41.384, 2.194),
            ),
            "Tourism protests in Barcelona are peaceful but block central streets.",
        ),
        Country(
            "GB",
            "United Kingdom",
            1,
            "Low risk; heightened terrorism threat level.",
            "999",
            51.507,
            -0.128,
            _zones(
                ("St Thomas' Hospital, London", "hospital", 51.498, -0.118),
                ("Royal Infirmary, Edinburgh", "hospital", 55.922, -3.134),
            ),
            "Threat level unchanged; expect visible security at major stations.",
        ),
        Country(
            "US",
            "United States",
            2,
            "Violent crime varies by city; severe weather.",
            "911",
            38.907,
            -77.037,
            _zones(
                ("Bellevue Hospital, New York", "hospital", 40.739, -73.975),
                ("Cedars-Sinai, Los Angeles", "hospital", 34.075, -118.380),
            ),
            "Hurricane season runs June to November on the Gulf and Atlantic coasts.",
        ),
        Country(
            "MX",
            "Mexico",
            3,
            "Crime and kidnapping risk in several states.",
            "911",
            19.433,
            -99.133,
            _zones(
                ("Hospital ABC, Mexico City", "hospital", 19.401, -99.200),
                ("Embassy district, Mexico City", "embassy", 19.427, -99.168),
            ),
            "Use registered taxis from airports; avoid intercity road travel at night.",
        ),
        Country(
            "BR",
            "Brazil",
            2,
            "High street crime in large cities.",
            "190",
            -15.794,
            -47.882,
            _zones(
                ("Hospital Sírio-Libanês, São Paulo", "hospital", -23.557, -46.654),
                ("Copa D'Or, Rio de Janeiro", "hospital", -22.966, -43.188),
            ),
            "Express kidnappings reported in São Paulo; withdraw cash inside banks.",
        ),
        Country(
            "EG",
            "Egypt",
            3,
            "Terrorism risk; avoid the North Sinai.",
            "122",
            30.044,
            31.236,
            _zones(
                ("As-Salam International Hospital, Cairo", "hospital", 30.013, 31.230),
                ("Embassy district, Garden City", "embassy", 30.037, 31.232),
            ),
            "Checkpoints on desert roads: carry your passport at all times.",
        ),
        Country(
            "KE",
            "Kenya",
            2,
            "Crime in Nairobi; unrest near the Somali border.",
            "999",
            -1.292,
            36.822,
            _zones(
                ("Aga Khan University Hospital, Nairobi", "hospital", -1.262, 36.823),
                ("Nairobi Hospital", "hospital", -1.296, 36.805),
            ),
            "Protests on Tuesdays and Thursdays in central Nairobi; plan around them.",
        ),
        Country(
            "JP",
            "Japan",
            1,
            "Low risk; earthquakes and typhoons.",
            "110",
            35.676,
            139.650,
            _zones(
                ("St. Luke's International Hospital, Tokyo", "hospital", 35.668, 139.778),
                ("Osaka University Hospital", "hospital", 34.822, 135.524),
            ),
            "Typhoon season peaks in September; rail services stop ahead of landfall.",
        ),
        Country(
            "TH",
            "Thailand",
            2,
            "Unrest in the deep south; road accidents.",
            "191",
            13.756,
            100.502,
            _zones(
                ("Bumrungrad Hospital, Bangkok", "hospital", 13.746, 100.553),
                ("Bangkok Hospital Phuket", "hospital", 7.905, 98.367),
            ),
            "Avoid Narathiwat, Pattani and Yala; road risk peaks at Songkran.",
        ),
    )
}


def advisory(code: str | None) -> dict[str, Any] | None:
    country = COUNTRIES.get((code or "").upper())
    if country is None:
        return None
    return {
        "country": country.code,
        "name": country.name,
        "level": country.level,
        "advice": LEVELS[country.level],
        "summary": country.summary,
        "emergency_number": country.emergency,
    }


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def position(waypoint: dict[str, Any]) -> tuple[float, float] | None:
    """A waypoint's coordinates, or its country's reference point when it has none."""
    lat, lon = waypoint.get("lat"), waypoint.get("lon")
    if isinstance(lat, (int, float)) and isinstance(lon, (int, float)):
        return float(lat), float(lon)
    country = COUNTRIES.get(str(waypoint.get("country") or "").upper())
    return (country.lat, country.lon) if country else None


def _level(waypoint: dict[str, Any]) -> int | None:
    country = COUNTRIES.get(str(waypoint.get("country") or "").upper())
    return country.level if country else None


def route_analysis(waypoints: list[dict[str, Any]]) -> dict[str, Any]:
    """Legs between consecutive waypoints with distance and risk, and the totals."""
    legs = []
    for start, end in zip(waypoints, waypoints[1:], strict=False):
        a, b = position(start), position(end)
        levels = [lvl for lvl in (_level(start), _level(end)) if lvl is not None]
        legs.append(
            {
                "from": start.get("name"),
                "to": end.get("name"),
                "distance_km": round(distance_km(*a, *b), 1) if a and b else None,
                "risk_level": max(levels) if levels else None,
            }
        )
    known = [leg["distance_km"] for leg in legs if leg["distance_km"] is not None]
    risky = [leg for leg in legs if (leg["risk_level"] or 0) >= 3]
    levels = [lvl for lvl in map(_level, waypoints) if lvl is not None]
    return {
        "destinations": len(waypoints),
        "legs": legs,
        "total_km": round(sum(known), 1),
        "highest_risk_level": max(levels) if levels else None,
        "legs_needing_review": len(risky),
        "unknown_positions": sum(1 for w in waypoints if position(w) is None),
    }


def nearest_safe_zones(waypoint: dict[str, Any], count: int = 2) -> list[dict[str, Any]]:
    """The ``count`` safe places nearest to a waypoint, with their distance."""
    here = position(waypoint)
    if here is None:
        return []
    zones = [z for c in COUNTRIES.values() for z in c.safe_zones]
    ranked = sorted(zones, key=lambda z: distance_km(*here, z.lat, z.lon))[:count]
    return [
        {
            "name": z.name,
            "kind": z.kind,
            "distance_km": round(distance_km(*here, z.lat, z.lon), 1),
        }
        for z in ranked
    ]


def briefing(title: str, waypoints: list[dict[str, Any]], alerts: dict[str, Any]) -> dict[str, Any]:
    """A pre-departure briefing package for one itinerary."""
    threshold = alerts.get("min_level", 2)
    advisories = [advisory(w.get("country")) for w in waypoints]
    stops = [
        {
            "name": waypoint.get("name"),
            "advisory": info,
            "alert": bool(info and isinstance(threshold, int) and info["level"] >= threshold),
            "safe_zones": nearest_safe_zones(waypoint, 1),
        }
        for waypoint, info in zip(waypoints, advisories, strict=True)
    ]
    countries = Counter(str(w.get("country") or "").upper() for w in waypoints)
    notes = [COUNTRIES[c].analyst_note for c in countries if c in COUNTRIES]
    return {
        "title": title,
        "route": route_analysis(waypoints),
        "stops": stops,
        "checklist": [
            "Register the trip with your embassy",
            "Save the emergency numbers below offline",
            "Share this itinerary with a contact at home",
        ]
        + (
            ["Arrange a security escort for level 3 stops"]
            if any(info and info["level"] >= 3 for info in advisories)
            else []
        ),
        "watch": notes,
    }


def analyst_notes(codes: list[str]) -> list[dict[str, Any]]:
    """The analysts' latest note for each known country code, highest risk first."""
    known = {c.upper() for c in codes} & COUNTRIES.keys()
    countries = sorted((COUNTRIES[c] for c in known), key=lambda c: (-c.level, c.code))
    return [
        {"country": c.code, "name": c.name, "level": c.level, "note": c.analyst_note}
        for c in countries
    ]
