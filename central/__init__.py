"""Watchgate central: the Layer-7 enforcement gateway, its identity provider, store and API."""

__version__ = "0.1.0"
