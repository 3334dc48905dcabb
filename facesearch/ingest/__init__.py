"""Folders, uploads and zips into a gallery: the ingest run, its ledger, background jobs."""
