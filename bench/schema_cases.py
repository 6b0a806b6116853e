"""What the structured-output benches share: seeded JSON schemas with a prompt each, and their options."""

from __future__ import annotations

import argparse
import random
from typing import Any

from harness import options

TOPICS = [
    ("a book", ["title", "author", "genre", "pages", "published", "isbn", "rating", "available"]),
    ("a city", ["name", "country", "population", "founded", "mayor", "coastal", "timezone", "area"]),
    ("a product", ["name", "sku", "price", "currency", "stock", "category", "discontinued", "added"]),
    ("a person", ["name", "age", "email_name", "role", "joined", "active", "team", "skills"]),
    ("a recipe", ["dish", "servings", "minutes", "vegetarian", "cuisine", "difficulty", "steps", "author"]),
    ("a flight", ["airline", "number", "origin", "destination", "departs", "gate", "delayed", "seats"]),
    ("a movie", ["title", "director", "year", "runtime", "genre", "rating", "released", "sequel"]),
    (
        "a bug report",
        ["title", "severity", "component", "reported", "reproducible", "owner", "status", "votes"],
    ),
]
ENUMS = [["low", "medium", "high"], ["red", "green", "blue"], ["draft", "open", "closed"], ["yes", "no"]]
PATTERNS = ["^[A-Z]{3}-[0-9]{3}$", "^[a-z]+$", "^[0-9]{4}$", "^(AB|CD)[0-9]{2}$"]


def scalar(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(
        ["string", "string", "integer", "number", "boolean", "enum", "format", "pattern", "null", "const"]
    )
    if kind == "string":
        return {"type": "string", "maxLength": rng.randint(8, 32)}
    if kind in ("integer", "number", "boolean"):
        return {"type": kind}
    if kind == "enum":
        return {"enum": rng.choice(ENUMS)}
    if kind == "format":
        return {"type": "string", "format": rng.choice(["date", "time", "date-time", "uuid"])}
    if kind == "pattern":
        return {"type": "string", "pattern": rng.choice(PATTERNS)}
    if kind == "const":
        return {"const": rng.choice(["v1", 1, True])}
    return {"type": [rng.choice(["string", "integer"]), "null"], "maxLength": rng.randint(8, 24)}


def obj(rng: random.Random, names: list[str], depth: int) -> dict[str, Any]:
    chosen = rng.sample(names, rng.randint(2, 5))
    props: dict[str, Any] = {}
    for name in chosen:
        roll = rng.random()
        if depth < 2 and roll < 0.15:
            props[name] = obj(rng, names, depth + 1)
        elif roll < 0.3:
            item = obj(rng, names, depth + 1) if depth < 2 and rng.random() < 0.4 else scalar(rng)
            props[name] = {
                "type": "array",
                "items": item,
                "minItems": rng.randint(0, 1),
                "maxItems": rng.randint(1, 3),
            }
        else:
            props[name] = scalar(rng)
    required = [n for n in chosen if rng.random() < 0.75] or chosen[:1]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def cases(n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        topic, names = rng.choice(TOPICS)
        out.append((f"Describe {topic} of your choice.", obj(rng, names, 0)))
    return out


def parser(doc: str, *, n: int, max_tokens: int) -> argparse.ArgumentParser:
    """The options both benches take: how many schemas, tokens per answer, the schemas' seed, threads."""
    p = options(doc)
    p.add_argument("--n", type=int, default=n)
    p.add_argument("--max-tokens", type=int, default=max_tokens)
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    return p
