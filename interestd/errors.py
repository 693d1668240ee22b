"""The one error hierarchy: every failure a person should read is an InterestdError with a one-line message."""


class InterestdError(Exception):
    """Base of all errors meant for people; `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(InterestdError):
    """The configuration file or the environment is invalid."""

    exit_code = 2


class UsageError(InterestdError):
    """A command was given arguments or input it cannot work with."""

    exit_code = 2


class MailboxError(InterestdError):
    """The mailbox could not be reached, logged into or read."""

    exit_code = 3


class DatabaseError(InterestdError):
    """The database could not be reached or is not in a usable state."""

    exit_code = 4


class SchemaError(DatabaseError):
    """The database schema does not match this version of interestd."""


class DeliveryError(InterestdError):
    """Mail (the report) could not be delivered; `permanent` when trying again will not help."""

    exit_code = 5

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class NotFoundError(InterestdError):
    """A card, message or manager named on the command line does not exist."""

    exit_code = 6


class ConflictError(InterestdError):
    """The action is refused because of the card's state (already claimed, not yours, ...)."""

    exit_code = 7


class ParseError(InterestdError):
    """A parser matched a message but could not build a card from it."""


class UnhealthyError(InterestdError):
    """`status` found the daemon unhealthy (used as a monitoring check)."""

    exit_code = 8
