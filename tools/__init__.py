"""Command-line tools and their libraries (data generation, preparation, splits, coarse poses)."""
