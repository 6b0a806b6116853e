"""Structure cues: what makes a text an instruction to the model rather than text about instructions.

Character and word n-grams learn the vocabulary of the attacks they were trained on; a new source uses other
words for the same moves. These cues name the moves: a message addressed to the assistant or agent, an
attempt to take over the task it was given ("before you answer…", "instead…", "do not tell the user"), a
switch of role or a fake system message, a delimiter that pretends the data has ended, and an order to act
on the outside world (send, forward, transfer, delete) found in text that should be data. Each cue that
matches adds one feature (a reserved index in the word block) for the linear classifier to weigh; the
classifier, not the cue, decides. They run on the normalised, lower-cased text (obfuscation undone).
"""

from __future__ import annotations

import re
import zlib

import numpy as np

_AI = r"(?:ai|a\.i\.|assistant|agent|model|language\s+model|llm|chatbot|bot|gpt(?:-?\d)?|claude|llama|gemini|copilot)"
CUES: dict[str, re.Pattern[str]] = {
    "addressed-to-ai": re.compile(
        rf"(?:\b(?:to|for|dear|attention|hey|hi|hello|note\s+to)\s+(?:you,?\s+)?(?:the\s+|an?\s+|my\s+)?{_AI}\b)"
        rf"|(?:\bif\s+you\s+are\s+an?\s+{_AI}\b)|(?:\b(?:as|you\s+are)\s+an?\s+(?:ai|language\s+model|llm)\b)"
    ),
    "task-takeover": re.compile(
        r"\bbefore\s+(?:you\s+)?(?:can\s+)?(?:solve|answer|continue|respond|reply|proceed|summari[sz]e|finish)"
        r"|\binstead\s+(?:of\s+(?:answering|summari[sz]ing|doing|the)|,?\s+(?:you\s+)?(?:must|should|will|do|say|print|output|write))"
        r"|\b(?:do\s+not|don'?t|never)\s+(?:tell|inform|mention|notify|reveal\s+(?:this|it)\s+to)\s+(?:this\s+|it\s+)?(?:to\s+)?the\s+user"
        r"|\bwithout\s+(?:telling|informing|notifying|asking)\s+the\s+user"
        r"|\b(?:your|the)\s+(?:new|real|actual|updated|next)\s+(?:task|goal|objective|instructions?|job)\b"
        r"|\b(?:from\s+now\s+on|starting\s+now|henceforth)\b"
        r"|\b(?:previous|prior|above|earlier|original)\s+(?:instructions?|prompts?|task|directives?|rules)\b"
    ),
    "role-switch": re.compile(
        r"(?:^|\n)\s*(?:#+\s*)?\(?(?:system|assistant|ai|user|human|admin|developer)\)?\s*(?:message|prompt|note|override)?\s*[:>\]]"
        r"|</?\s*(?:information|instructions?|system|admin|important|context|im_start|im_end)\s*>"
        r"|\[\s*(?:system|inst|admin|instructions?)\s*\]|#{2,}\s*\(?system"
    ),
    "fake-end-of-data": re.compile(
        r"(?:end\s+of\s+(?:the\s+)?(?:document|text|input|context|data|email|file|page|conversation|review))"
        r"|(?:^|\n)\s*(?:={3,}|-{3,}|\*{3,}|`{3,}|#{3,})\s*(?:\n|$)"
    ),
    "act-on-world": re.compile(
        r"\b(?:send|forward|e-?mail|transfer|wire|pay|delete|remove|upload|post|share|invite|exfiltrate|leak)\s+"
        r"(?:\w+\s+){0,4}(?:to|at|into)\s+(?:\S+@\S+|https?://|www\.|[a-z0-9.-]+\.(?:com|net|org|io|xyz|ru)\b|iban|account|us\d{2}|gb\d{2}|de\d{2})"
    ),
    "urgent-order": re.compile(
        r"\b(?:important|urgent|attention|warning|notice)\s*[!:]+\s*(?:\w+\s+){0,6}(?:you\s+)?(?:must|should|need\s+to|have\s+to|are\s+(?:required|instructed))"
        r"|\byou\s+(?:must|are\s+(?:required|instructed|ordered)\s+to)\s+(?:now\s+|immediately\s+|first\s+)?(?:ignore|disregard|forget|send|forward|reveal|print|output|say|respond|reply|stop)"
    ),
}
_OVERRIDE = r"\b(?:ignore|ignoring|disregard|forget|override|bypass)\s+"
_INSTRUCTIONS = (
    r"(?:\w+\s+){0,3}(?:previous|prior|above|earlier|preceding|all|everything|anything|your|system|instructions?|"
    r"rules|guidelines|restrictions|prompts?|directives?|programming|safety|filters?|polic(?:y|ies)|constraints|ethics|"
    r"told|said|given|taught|trained|training|limits|limitations|censorship|guardrails|boundaries|morals?|identity)\b"
)
# "ignore" aimed at the model's instructions, and "ignore" aimed at anything else ("ignore case", "ignore SSL
# errors", "disregard the typo"): the word alone is in attacks and ordinary requests alike
CUES["override-instructions"] = re.compile(_OVERRIDE + _INSTRUCTIONS)
CUES["override-other"] = re.compile(_OVERRIDE + f"(?!{_INSTRUCTIONS})")
# one reserved index per cue, in the word block (collisions with word hashes are as rare as between words)
_SALT = b"llmdock-cue:"


def _index(name: str, size: int) -> int:
    return zlib.crc32(_SALT + name.encode()) % size


def cue_ids(text: str, size: int) -> np.ndarray:
    """The word-block indices of the cues that match ``text`` (normalised), sorted."""
    found = sorted({_index(name, size) for name, pattern in CUES.items() if pattern.search(text)})
    return np.array(found, dtype=np.int64)


def cues_in(text: str) -> list[str]:
    """The names of the cues that match (for a verdict's details)."""
    return [name for name, pattern in CUES.items() if pattern.search(text)]
