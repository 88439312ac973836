"""promptbot: a GitOps bot for a repository of LLM agent prompts."""

__version__ = "0.1.0"
