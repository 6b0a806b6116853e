"""llmdock's own PII recognizers (names, street addresses, loosely written phone numbers, dates of birth,
ages, ID numbers), through the engine that runs them, on text of the kinds bench/pii_quality.py measures."""

from __future__ import annotations

import pytest

from llmdock.privacy.pii_engine import PiiEngine, shared_engine

OWN = ("PERSON", "STREET_ADDRESS", "PHONE_NUMBER", "DATE_OF_BIRTH", "AGE", "ID_NUMBER")


@pytest.fixture(scope="module")
def engine() -> PiiEngine:
    return shared_engine(OWN)


def found(engine: PiiEngine, text: str, entity: str) -> list[str]:
    return [text[f.start : f.end] for f in engine.find(text) if f.entity == entity]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("I live at 1659 Hoog St, Brakpan 1553 now.", "1659 Hoog St, Brakpan 1553"),
        ("Send it to Via Pisanelli 104, Traversara 48020 please", "Via Pisanelli 104, Traversara 48020"),
        ("Mattenstrasse 108, 4450 Sissach", "Mattenstrasse 108, 4450 Sissach"),
        ("We moved to 94 boulevard Amiral Courbet", "94 boulevard Amiral Courbet"),
        ("ul. Leśna 99/81, 05-235 Legnica", "ul. Leśna 99/81, 05-235 Legnica"),
        ("Průjezdná 41, 420 32 Brno", "Průjezdná 41, 420 32 Brno"),
        ("The box is P.O. Box 255 in town", "P.O. Box 255"),
    ],
)
def test_street_addresses_of_several_countries_are_found_whole(
    engine: PiiEngine, text: str, address: str
) -> None:
    assert found(engine, text, "STREET_ADDRESS") == [address]


@pytest.mark.parametrize(
    "text",
    [
        "What are the top 10 weaknesses of this plan?",
        "In 1996 the club won 3 cups and 2 Leagues.",
        "Japan 2 Syria 1",
        "Take 2 tablets of Vitamin D each morning.",
    ],
)
def test_numbers_beside_words_are_not_addresses(engine: PiiEngine, text: str) -> None:
    assert found(engine, text, "STREET_ADDRESS") == []


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Marcello Cuttitta joined the team.", "Marcello Cuttitta"),
        ("Please ask Julie van der Linden to sign.", "Julie van der Linden"),
        ("Hi Jay, thanks for the parcel.", "Jay"),
        ("Dr. Okafor will see you now.", "Okafor"),
    ],
)
def test_names_are_found_by_lists_titles_and_greetings(engine: PiiEngine, text: str, name: str) -> None:
    assert name in found(engine, text, "PERSON")


def test_names_that_are_common_words_need_a_title_or_a_greeting(engine: PiiEngine) -> None:
    assert found(engine, "Will May come to the meeting? Can Rose grow here?", "PERSON") == []
    assert found(engine, "Dear Rose, the meeting moved.", "PERSON") == ["Rose"]


@pytest.mark.parametrize(
    "phone",
    ["+46 (0)888 590 79", "(956)198 5861 x123", "+1-596-414-1812x34052", "02.64.62.52.37", "(01632) 960715"],
)
def test_phone_numbers_as_people_write_them(engine: PiiEngine, phone: str) -> None:
    assert found(engine, f"You can reach me on {phone} in the afternoon.", "PHONE_NUMBER") == [phone]


def test_short_digit_groups_are_phones_only_after_a_context_word(engine: PiiEngine) -> None:
    assert found(engine, "My mobile is 445 6271.", "PHONE_NUMBER") == ["445 6271"]
    assert found(engine, "The order held 445 6271 screws.", "PHONE_NUMBER") == []
    assert found(engine, "Scores: 1996-12-06 and 536-22-8726", "PHONE_NUMBER") == []


def test_a_date_is_a_date_of_birth_only_beside_birth_words(engine: PiiEngine) -> None:
    assert found(engine, "She was born on 3/29/1982 in Oslo.", "DATE_OF_BIRTH") == ["3/29/1982"]
    assert found(engine, "The invoice of 3/29/1982 is paid.", "DATE_OF_BIRTH") == []


def test_ages_and_id_numbers(engine: PiiEngine) -> None:
    assert found(engine, "Patient is a 37-year-old male.", "AGE") == ["37-year-old"]
    assert found(engine, "My passport number is WK48391724.", "ID_NUMBER") == ["WK48391724"]
    assert found(engine, "The part WK48391724 is in stock.", "ID_NUMBER") == []


def test_a_place_that_is_also_a_surname_is_not_a_person_alone(engine: PiiEngine) -> None:
    assert found(engine, '{"city": "Paris"} and London are rainy', "PERSON") == []
    assert found(engine, "Paris Hilton arrived.", "PERSON") == ["Paris Hilton"]


def test_a_disease_named_after_a_person_is_not_a_person(engine: PiiEngine) -> None:
    assert found(engine, "Does Bowens disease spread?", "PERSON") == []
    assert "Bowens" in found(engine, "The doctor, Bowens, said it does not.", "PERSON")


def test_a_text_of_over_a_million_characters_is_read_to_its_end(engine: PiiEngine) -> None:
    text = "x " * 600_000 + "She was born on 3/4/1990."  # a weak finding: its context words are read
    assert found(engine, text, "DATE_OF_BIRTH") == ["3/4/1990"]
