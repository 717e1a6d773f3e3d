"""Errors raised by object stores, envelope encryption and key providers."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error the storage package raises."""


class ObjectNotFound(StorageError):
    """No object is stored under the requested key."""


class InvalidKey(StorageError):
    """An object key is malformed or could escape the store's root."""


class InvalidRange(StorageError, ValueError):
    """A byte offset, length or range is negative, reversed or past the end."""


class SealError(StorageError):
    """A sealed object has a bad header, fails authentication or cannot be sealed."""


class KekUnavailable(StorageError, KeyError):
    """The key provider holds no key-encryption key with the requested id/version."""

    def __str__(self) -> str:
        """Show the message as given, not quoted as KeyError would."""
        return str(self.args[0]) if self.args else ""


class KeyFileError(StorageError):
    """Key file content is malformed, or creating one would overwrite a file."""
