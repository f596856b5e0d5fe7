"""Profiles: measured cost models (model x GPU) stored as YAML data."""

from loratwin.profiles.load import builtin_profiles, load_profile
from loratwin.profiles.model import Profile

__all__ = ["Profile", "builtin_profiles", "load_profile"]
