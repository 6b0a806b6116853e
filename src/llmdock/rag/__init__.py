"""Grounding (issue 18): knowledge bases, chunking, embeddings, retrieval, the ground stage."""
