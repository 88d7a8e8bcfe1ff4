"""The engine daemon and the keeper that owns container processes and their terminals."""
