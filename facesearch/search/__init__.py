"""A photo's faces against a gallery: the search, verdicts, thresholds, impostor calibration."""
