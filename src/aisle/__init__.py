"""Aisle: an open-source engine for online stores' search and recommendations."""

__version__ = "0.1.0"
