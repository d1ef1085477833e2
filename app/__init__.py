"""Soloist: a desktop AI office for one-person businesses."""

__version__ = "0.1.0"
