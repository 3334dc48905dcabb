"""Photos in, faces out: decoding, face detectors, alignment, the quality gate, drawing boxes."""
