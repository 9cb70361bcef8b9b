"""The AI engine's library."""
