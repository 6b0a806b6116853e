"""Red-team scans: probes from third-party corpora and templates, asked through the evaluation runner,
judged by the guard detectors and the evaluation metrics, aggregated into findings with reproductions."""

from llmdock.scan.corpora import CORPORA, Corpus
from llmdock.scan.findings import Example, Finding
from llmdock.scan.probes import CATEGORIES, parse_categories, probes
from llmdock.scan.run import ScanOptions, ScanResult, run_scan

__all__ = [
    "CATEGORIES",
    "CORPORA",
    "Corpus",
    "Example",
    "Finding",
    "ScanOptions",
    "ScanResult",
    "parse_categories",
    "probes",
    "run_scan",
]
