"""The package version, in one place (the CLI's --version and the package's __version__)."""

__version__ = "0.1.0"
