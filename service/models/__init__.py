"""The model pipeline: sources, export, variants and their fidelity gates, the cache, tokenization, engines."""
