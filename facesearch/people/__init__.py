"""People: the faces of a photo library (ingested unlabelled, format ``photos``) grouped
into people that a user names, merges and corrects.

``grouping.py``: the grouping rule on arrays (no store, no files); ``store.py``: people
and decisions in ``$FACESEARCH_HOME/people.sqlite``; ``service.py``: one function per
action, what the People page and ``facesearch people`` call. See docs/ARCHITECTURE.md,
"People".
"""
