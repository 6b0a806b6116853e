"""Input and output guardrails: detectors (plugins), policies, and the guard_in / guard_out stages."""

from llmdock.guards.base import Detector, DetectorFactory, DetectorParams, Finding, GuardText, Verdict
from llmdock.guards.stage import GuardInStage, GuardOutStage

__all__ = [
    "Detector",
    "DetectorFactory",
    "DetectorParams",
    "Finding",
    "GuardInStage",
    "GuardOutStage",
    "GuardText",
    "Verdict",
]
