"""The audit log service: who did what, when and from where (append-only, kept apart from business history)."""
