"""Synthetic participants for demos. Every name, number and address is invented."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

GIVEN = ["Amira", "Kofi", "Ольга", "Nadia", "Dilnoza", "Tenzin", "María José", "Samira", "Nguyễn Thị",
         "Aroha", "Thandiwe", "Rustam", "Leila", "Chidi", "Yerlan", "Ana Lúcia", "Sunita", "Mehmet",
         "أميرة", "Ximena", "Jin-woo", "Fatoumata", "Ivan", "Zainab", "Tupac", "Miriam", "Kwame", "Lưu"]
FAMILY = ["Haddad", "Mensah", "Quispe Mamani", "Yılmaz", "Dlamini", "Al-Sayed", "Ñúñez", "Văn Tám",
          "Nguyễn", "Kowalczyk", "Abdi", "Okonkwo", "Tran", "منصور", "Herrera", "Sithole", "Petrenko",
          "Wangchuk", "Rahimi", "Mbeki", "Morales", "Kaur", "Ibragimov", "Dubois"]
COUNTRIES = ["Syria", "Ethiopia", "Nicaragua", "Iran", "Guatemala", "Germany", "Belarus", "Colombia",
             "Philippines", "Egypt", "Myanmar", "Zimbabwe", "Honduras", "Kyrgyzstan", "Sudan", "Mexico",
             "Bangladesh", "Cameroon", "Venezuela", "Turkey", "Russia", "Brazil", "India", "Uganda"]
ORGS = ["Free Press Network", "Families of the Disappeared", "Land Rights Watch", "Independent journalist",
        "Indigenous Water Council", "Lawyers for Justice", "Rainbow Defenders", "Forest Guardians"]
WORK = ["journalism", "law", "environment", "indigenous_rights", "disappearances", "lgbti", "democracy"]
# Kobo choice codes of a "tick all that apply" question (the schema's dietary is a list).
DIET = [[], ["vegetarian"], ["vegan"], ["halal"], ["no_pork"], ["gluten_free", "nut_allergy"]]
NOTES = ["Followed after returning from the last training.", "Phone seized at the border in 2025.",
         "Family received threats; do not share travel details.", "Ongoing criminal case for reporting.",
         "No known incidents.", "Organisation raided in March; colleagues detained."]


def participants(n: int, seed: int = 2026) -> list[dict[str, Any]]:
    """n deterministic synthetic registrations filling every class of the default schema."""
    rng = random.Random(seed)  # noqa: S311 - not secret: reproducible synthetic demo data
    out = []
    for i in range(n):
        given, family = rng.choice(GIVEN), rng.choice(FAMILY)
        arrival = dt.date(2026, 11, 7) + dt.timedelta(days=rng.randint(0, 2))
        out.append({
            "legal_name": f"{given} {family}",
            "badge_name": given,
            "pronouns": rng.choice(["she/her", "he/him", "they/them", ""]),
            "photo_consent": rng.random() < 0.6,
            "arrival": arrival,
            "departure": arrival + dt.timedelta(days=7),
            "dietary": list(rng.choice(DIET)),
            "email": f"{rng.getrandbits(40):010x}@example.org",
            "phone": f"+{rng.randint(20, 99)} {rng.randint(100, 999)} {rng.randint(1000000, 9999999)}",
            # (name, birth date) pairs must not repeat, or the importer rightly flags duplicates:
            # 7919 is prime, so i -> i * 7919 mod 20000 is a bijection on the first 20,000 rows.
            "date_of_birth": dt.date(1952, 1, 1) + dt.timedelta(days=(i * 7919) % 20000),
            "nationality": rng.choice(COUNTRIES),
            "country_of_residence": rng.choice(COUNTRIES),
            "passport_number": f"{rng.choice('ABCPX')}{rng.randint(10_000_000, 99_999_999)}",
            "organisation": rng.choice(ORGS),
            "field_of_work": rng.choice(WORK),
            "risk_level": rng.choices(["low", "medium", "high", "critical"], [5, 3, 2, 1])[0],
            "risk_notes": rng.choice(NOTES),
        })
    return out
