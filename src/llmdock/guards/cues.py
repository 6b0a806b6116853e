"""Structure cues: what makes a text an instruction to the model rather than text about instructions.

They name the moves of an attack: a message addressed to the assistant or agent, an attempt to take over the
task it was given ("before you answer…", "instead…", "do not tell the user"), a switch of role or a fake
system message, a delimiter that pretends the data has ended, an order to act on the outside world (send,
forward, transfer, delete), and whether an "ignore / forget / disregard" is aimed at the model's
instructions or at something else. They run on the normalised, lower-cased text. The injection detector
names the cues a flagged text shows (``details["cues"]``) and does not block a short request whose only cue
is an "ignore" aimed elsewhere ("please ignore case when you sort…").

Measured as extra features of the classifier (one reserved feature per cue), they changed nothing in the
leave-one-source-out figures (macro recall / FPR 0.737 / 0.130 without, 0.730 / 0.123 with) and doubled the
injection detector's CPU time on 1,000-character prompts (window by window), so the classifier does not use
them (bench/README.md, guards).
"""

from __future__ import annotations

import re

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


def cues_in(text: str) -> list[str]:
    """The names of the cues that match (for a verdict's details)."""
    return [name for name, pattern in CUES.items() if pattern.search(text)]
