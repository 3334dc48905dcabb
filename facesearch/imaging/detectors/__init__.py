"""One module per face detector; facesearch.imaging.detection holds the registry."""
