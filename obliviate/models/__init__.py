"""Loading any Hugging Face causal LM, and building/training/caching the tiny ones."""
