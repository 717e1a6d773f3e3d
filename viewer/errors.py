"""Errors of installing and serving the viewer."""

from __future__ import annotations


class ViewerError(Exception):
    """Base of every viewer error."""


class ViewerInstallError(ViewerError):
    """The viewer could not be fetched, checked, unpacked or configured."""
