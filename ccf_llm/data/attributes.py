"""Textual attributes of items (genres, categories) and users (age band, gender, occupation) for the prompt.

An item's attribute text is lower-case and comma-separated ("comedy, crime"); an item without attributes has
no entry (its prompt shows the title alone). A user's profile is one sentence ("The user is a 25-34-year-old
male programmer."); a user with nothing known has no profile.
"""

from __future__ import annotations

import math

import pandas as pd

# GroupLens ML-1M README codes; ML-100K gives ages in years and occupations by name.
ML1M_AGE_BANDS = {
    1: "under-18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "over-55",
}  # fmt: skip
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin worker", "college/grad student",
    "customer service worker", "doctor/health care worker", "executive/managerial worker", "farmer",
    "homemaker", "K-12 student", "lawyer", "programmer", "retired person", "sales/marketing worker",
    "scientist", "self-employed person", "technician/engineer", "tradesman/craftsman", "unemployed person",
    "writer",
)  # fmt: skip
GENDERS = {"m": "male", "f": "female"}


def genre_text(raw: object, sep: str = "|") -> str:
    """``"Comedy|Crime"`` -> ``"comedy, crime"``; empty, missing or "(no genres listed)" -> ``""``."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return ""
    names = [name.strip().lower() for name in str(raw).split(sep)]
    return ", ".join(name for name in names if name and name not in ("(no genres listed)", "unknown"))


def age_band(age: object) -> str | None:
    """An ML-1M band code (1, 18, 25, ...) or an age in years -> the ML-1M band's name."""
    if age is None or pd.isna(age):
        return None
    years = float(age)
    if int(years) in ML1M_AGE_BANDS and years == int(years):
        return ML1M_AGE_BANDS[int(years)]
    lower = max((code for code in ML1M_AGE_BANDS if code <= years), default=1)
    return ML1M_AGE_BANDS[lower]


def occupation_name(occupation: object) -> str | None:
    """An ML-1M occupation code (0-20) or a name (ML-100K's "programmer") -> a noun phrase."""
    if occupation is None or pd.isna(occupation):
        return None
    if isinstance(occupation, str) and not occupation.strip().isdigit():
        name = occupation.strip().lower()
        return None if name in ("", "none", "other") else name
    code = int(float(occupation))
    return ML1M_OCCUPATIONS[code] if 0 < code < len(ML1M_OCCUPATIONS) else None


def user_profile_text(gender: object = None, age: object = None, occupation: object = None) -> str:
    """One sentence of what is known, e.g. "The user is a 25-34-year-old male programmer."; ``""`` if nothing."""
    band = age_band(age)
    sex = GENDERS.get(str(gender).strip().lower()) if gender is not None and not pd.isna(gender) else None
    job = occupation_name(occupation)
    words = [f"{band}-year-old" if band else None, sex, job or ("person" if band or sex else None)]
    words = [word for word in words if word]
    if not words:
        return ""
    article = "an" if words[0][0] in "aeiouAEIOU8" or words[0].startswith("18-") else "a"
    return f"The user is {article} {' '.join(words)}."


def user_profiles(users: pd.DataFrame | None) -> dict[int, str]:
    """uid -> profile sentence for every user with something known (columns gender / age / occupation, any subset)."""
    if users is None or "uid" not in users.columns:
        return {}
    columns = [column for column in ("gender", "age", "occupation") if column in users.columns]
    profiles = {}
    for row in users[["uid", *columns]].itertuples(index=False):
        values = row._asdict()
        text = user_profile_text(*(values.get(column) for column in ("gender", "age", "occupation")))
        if text:
            profiles[int(values["uid"])] = text
    return profiles
