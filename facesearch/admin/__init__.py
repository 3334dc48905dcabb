"""Who may change the gallery, the audit log, erasure, export and restore."""
