"""The errors a user can see. Adapters translate library exceptions into these."""


class WorkbenchError(Exception):
    """Base of every foreseeable failure; its message is shown to the user as is."""

    exit_code = 3


class ManifestError(WorkbenchError):
    """A `workbench.toml` is missing, unreadable or invalid."""

    def __init__(self, path: str, key: str | None, problem: str):
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")


class ProjectNotFound(WorkbenchError):
    pass


class RunNotFound(WorkbenchError):
    pass


class EngineUnavailable(WorkbenchError):
    """The Docker engine cannot be reached."""


class EnvironmentBuildError(WorkbenchError):
    """The project's environment image could not be built."""


class RunCancelled(WorkbenchError):
    """The run was cancelled before its stages started (while its environment image was built)."""


class StoreError(WorkbenchError):
    """The lineage store could not be read or written."""


class VersionNotFound(WorkbenchError):
    """No such model version in the project's registry."""


class MirrorError(WorkbenchError):
    """MLflow could not be reached or refused a call; the outbox keeps the item for later."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable
        """The server did not answer at all: no point trying the next items now."""


class DiskFullError(WorkbenchError):
    pass


class UsageError(WorkbenchError):
    """The command line asks for something that cannot be read (a malformed `--where`, a
    column that does not exist): sysexits' EX_USAGE, as argparse's own errors."""

    exit_code = 64
