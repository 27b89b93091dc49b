"""Errors a user can act on.

Every error raised for a user's mistake derives from :class:`DriftloopError`; the CLI prints its
message as one line and exits non-zero, the HTTP services map it to a 4xx. Anything else is a bug.
"""

from __future__ import annotations

# The CLI's exit codes (``driftloop <command> --help`` lists them in each epilog).
EXIT_FAILURE = 1  # the command ran and failed: a run failed, a server did not answer, problems were found
EXIT_USAGE = 2  # what was typed is wrong: an option, a value, or a file, registry, model or version that is not there


class DriftloopError(Exception):
    """Base class for errors caused by input or state the user controls."""

    exit_code: int = EXIT_USAGE
    http_status: int = 400


class DataError(DriftloopError):
    """A data file cannot be read or does not fit the dataset spec."""


class DataValidationError(DataError):
    """Data failed validation; names the column and the problem.

    Raised by :func:`driftloop.validation.validate_table`, it also carries what the validation report needs:
    ``report`` (every check run, the failing one among them) and ``frame`` (the table as far as validation got).
    """

    def __init__(self, column: str | None, problem: str, report=None, frame=None) -> None:
        self.column = column
        self.problem = problem
        self.report = report
        self.frame = frame
        where = f"column '{column}': " if column else ""
        super().__init__(f"data validation failed: {where}{problem}")


class ConfigError(DriftloopError):
    """A setting or parameter is missing or invalid."""


class RegistryError(DriftloopError):
    """A registry operation cannot be carried out."""


class ModelNotFoundError(RegistryError):
    """The model name or version does not exist."""

    http_status = 404


class VersionExistsError(RegistryError):
    """A version was about to be written over; versions are immutable."""

    http_status = 409


class IntegrityError(RegistryError):
    """A stored file does not match the checksum the registry recorded for it."""

    exit_code = EXIT_FAILURE
    http_status = 500


class UnavailableError(DriftloopError):
    """A service or store the command needs did not answer (the monitor, a gateway, S3, Kubeflow Pipelines)."""

    exit_code = EXIT_FAILURE
    http_status = 503
