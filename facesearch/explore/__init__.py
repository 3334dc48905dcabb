"""The gallery as maps: PCA and t-SNE projections."""
