"""The functional core: pure functions over plain data. No I/O library is imported here."""
