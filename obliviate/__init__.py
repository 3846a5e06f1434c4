"""obliviate: LLM unlearning that does not fool itself."""

__version__ = "0.1.0"
