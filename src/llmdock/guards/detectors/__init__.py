"""The built-in detectors, registered through the ``llmdock_detectors`` hook like any plugin's."""

from llmdock.guards.base import DetectorFactory
from llmdock.guards.detectors.injection import InjectionDetector
from llmdock.guards.detectors.output import GroundingDetector, LeakageDetector, RefusalDetector, UrlDetector
from llmdock.guards.detectors.pii import PiiDetector
from llmdock.guards.detectors.rules import (
    BannedTopicsDetector,
    LanguageDetector,
    PatternDetector,
    PromptLengthDetector,
)
from llmdock.guards.detectors.secrets import SecretsDetector
from llmdock.guards.detectors.toxicity import ToxicityDetector

BUILTIN_DETECTORS: tuple[DetectorFactory, ...] = (
    InjectionDetector,
    SecretsDetector,
    PiiDetector,
    PromptLengthDetector,
    PatternDetector,
    BannedTopicsDetector,
    LanguageDetector,
    ToxicityDetector,
    LeakageDetector,
    UrlDetector,
    RefusalDetector,
    GroundingDetector,
)
