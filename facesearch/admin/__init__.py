"""Admin acts on the gallery: erasure of a person (privacy), export and restore (archive)."""
