"""How well a model does: pairs protocols, open-set identification, metrics."""
