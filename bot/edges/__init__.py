"""Adapters to the outside world: git, forges, clock, tokenizer."""
