"""Relatives: the kinship space (space.py), families ranked for a face (retrieval.py) and
the reunification search on a gallery (search.py)."""
