"""Labelled photo collections: one module per format, one registry."""
