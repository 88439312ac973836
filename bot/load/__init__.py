"""Reading the repository's files and the metrics exports into plain data."""
