"""Datasets (issue 20): import, cleaning steps, versions by content hash with lineage."""
