"""SQLite storage: chat history (and, later, vector stores)."""
