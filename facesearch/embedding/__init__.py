"""detect -> align -> embed for one photo, and the embedding cache."""
