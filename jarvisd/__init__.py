"""jarvisd: a local, always-on knowledge daemon for markdown vaults."""

__version__ = "0.1.0"
