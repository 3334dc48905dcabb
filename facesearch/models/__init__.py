"""Embedding models: one embedder per file on one base class, the registry, weight files."""
