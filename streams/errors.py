"""One error hierarchy for inferwatch; ``retriable`` says whether trying again can help."""

from __future__ import annotations


class InferwatchError(Exception):
    """Base of every error inferwatch raises on purpose."""

    retriable: bool = False


class ConfigError(InferwatchError):
    """The configuration is invalid; the message names the key."""


class ServiceError(InferwatchError):
    """A service we depend on (the Kafka broker) failed; trying again may help."""

    retriable = True
