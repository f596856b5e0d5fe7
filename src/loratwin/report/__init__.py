"""Presenting results: terminal tables now; charts and HTML pages build on the same results."""
