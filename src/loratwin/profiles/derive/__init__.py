"""Profiles derived from a model's architecture and a GPU's datasheet, without measurements."""
