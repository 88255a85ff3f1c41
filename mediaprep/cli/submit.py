"""submit, status and sandbox commands (being written)."""
