"""Tests of the AI engine's library (agents/)."""
