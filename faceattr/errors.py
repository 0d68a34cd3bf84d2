"""The kit's expected failures: each one is a clear, one-line message that names the path or setting and what
to do. The CLI prints these as one line; anything else is a bug and keeps its traceback."""

from __future__ import annotations


class FaceattrError(Exception):
    """An expected failure caused by the input, the settings or the files, never by a bug."""


class SettingsError(FaceattrError, ValueError):
    """A bad setting or parameter value."""


class DataError(FaceattrError, ValueError):
    """Bad data input, with a message that says what to do."""


class DatasetNotFound(DataError, FileNotFoundError):
    """The data path does not exist."""


class RunDirError(FaceattrError, ValueError):
    """A run folder that cannot be used as asked, or is damaged."""


class PhotoError(FaceattrError, ValueError):
    """A photo that cannot be read or written."""


class SequenceError(FaceattrError, RuntimeError):
    """A notebook of the sequence failed, or its parameters were wrong."""


class DiskFullError(FaceattrError, OSError):
    """No space left (or the quota is used up) on the disk being written; an OSError too, so a fallback that
    handles write failures (the decoded-image store's) still applies."""

    def __str__(self) -> str:
        """The one-line message, not OSError's "[Errno 28] ..." form."""
        return str(self.args[0]) if self.args else ""


class ModelContractError(FaceattrError, ValueError):
    """A model (a student's edit of notebook 03) that the kit cannot train: one line per problem."""

    def __init__(self, header: str, problems: list[str]):
        super().__init__("\n".join([header, *(f"- {problem}" for problem in problems)]))
        self.problems = list(problems)

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: the error's name and its lines, not the kit's internals."""
        return [f"{type(self).__name__}: {self}"]
