"""A workspace: the folder the workbench is opened on, its projects and its state folder."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.adapters.project_sources import read_python_sources
from workbench.adapters.workspace_config_file import read_settings_text, read_workspace_config
from workbench.core.errors import ManifestError, ProjectNotFound, WorkbenchError
from workbench.core.manifest import MANIFEST_NAME, Manifest, parse_manifest
from workbench.core.scaffold import NothingToRun, manifest_text, survey
from workbench.core.workspace_config import WorkspaceConfig
from workbench.services.data_columns import check_data_columns

STATE_DIR = ".workbench"
STATE_DIR_MODE = 0o700
# Projects are found in the workspace folder's children and grandchildren, so both a folder
# of projects and a repository holding `projects/` work as a workspace.
SEARCH_DEPTH = 2
PROJECT_DIRS_TTL_S = 0.5
"""A project folder made or removed shows within this long (manifest edits show at once)."""
SKIPPED = {STATE_DIR, ".git", "node_modules", "__pycache__", ".venv", "venv"}
MAX_MANIFEST_BYTES = 1024**2


class ProjectClash(ManifestError):
    """Two project folders give the same `project.name`. A name identifies one folder: its
    runs, model versions, aliases and MLflow model all hang on it, so neither may run."""

    def __init__(self, folder: Path, name: str, others: list[Path]):
        self.folder = folder
        self.others = others
        elsewhere = " and ".join(str(o) for o in others)
        super().__init__(str(folder / MANIFEST_NAME), "project.name",
                         f"{name!r} is also the name of the project in {elsewhere}; a name identifies one "
                         "project folder (its runs and model versions): rename one of them")


@dataclass(frozen=True)
class ProjectRef:
    path: Path
    manifest: Manifest | None
    error: ManifestError | None = None

    @property
    def name(self) -> str:
        return self.manifest.name if self.manifest else self.path.name

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME


def load_manifest(project_dir: Path) -> tuple[Manifest, str]:
    """The project's manifest and a hash of its text."""
    path = project_dir / MANIFEST_NAME
    text = read_settings_text(path, MAX_MANIFEST_BYTES, "a manifest is a few kilobytes")
    if text is None:
        raise ManifestError(str(path), None, "no such file: a project folder needs a workbench.toml")
    manifest = parse_manifest(text, str(path))
    check_data_columns(manifest, project_dir, str(path))
    return manifest, hashlib.sha256(text.encode()).hexdigest()


class Workspace:
    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise WorkbenchError(f"workspace {self.root} is not a folder")
        self.state_dir = self.root / STATE_DIR
        self._dirs: tuple[float, list[Path]] | None = None
        self._parsed: dict[Path, tuple[tuple, tuple[Manifest | None, ManifestError | None]]] = {}
        """Manifests by folder with the stat they were parsed at: every lookup by path checks the
        other projects' names, and a screen refresh looks up each project, so parse each once."""

    def ensure_state_dir(self) -> Path:
        try:
            # The owner's alone: objects, snapshots, runs and the lineage store hold copies of
            # project files (a 0600 `.env` included). Stage containers reach what they need
            # through bind mounts, which do not need the parent folder's permissions.
            self.state_dir.mkdir(mode=STATE_DIR_MODE, exist_ok=True)
            if stat.S_IMODE(self.state_dir.stat().st_mode) != STATE_DIR_MODE:
                os.chmod(self.state_dir, STATE_DIR_MODE)  # tighten one made looser, by us or by hand
        except OSError as exc:
            raise WorkbenchError(f"cannot create the workspace state folder {self.state_dir}: {exc.strerror}") from None
        return self.state_dir

    @property
    def lineage_path(self) -> Path:
        return self.state_dir / "lineage.duckdb"

    @property
    def config(self) -> WorkspaceConfig:
        """The workspace's own settings (`workspace.toml` at its root; the defaults without it),
        read each time: a few lines, and an edit counts from the next command or run."""
        return read_workspace_config(self.root)

    def projects(self) -> list[ProjectRef]:
        """Every project in the workspace, including ones whose manifest is invalid and ones
        whose name another folder uses too (each carries a ProjectClash naming the other)."""
        refs, seen = [], set()
        for path in self._project_dirs():
            real = path.resolve() if path.is_symlink() or path.parent.is_symlink() else path
            if real in seen:
                continue  # a symlink to a project folder listed already: the same project
            seen.add(real)
            manifest, error = self._manifest(path)
            refs.append(ProjectRef(path, manifest, error))
        return _with_clashes(refs)

    def _manifest(self, folder: Path) -> tuple[Manifest | None, ManifestError | None]:
        """The folder's manifest (or why it is unusable), parsed again only when its file changed."""
        try:
            st = (folder / MANIFEST_NAME).stat()
            signature = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        except OSError:
            signature = None
        cached = self._parsed.get(folder)
        if signature is not None and cached is not None and cached[0] == signature:
            return cached[1]
        try:
            result = (load_manifest(folder)[0], None)
        except ManifestError as exc:
            result = (None, exc)
        if signature is not None:
            self._parsed[folder] = (signature, result)
        return result

    def _project_dirs(self) -> list[Path]:
        """The project folders, walked again at most every PROJECT_DIRS_TTL_S: a lookup by name
        or path checks every project's name, and a screen refresh looks up each project."""
        now = time.monotonic()
        if self._dirs is not None and now - self._dirs[0] < PROJECT_DIRS_TTL_S:
            return list(self._dirs[1])
        found = self._walk_project_dirs()
        self._dirs = (now, found)
        return list(found)

    def _walk_project_dirs(self) -> list[Path]:
        found = []
        if (self.root / MANIFEST_NAME).is_file():
            found.append(self.root)
        frontier = [self.root]
        for _depth in range(SEARCH_DEPTH):
            next_frontier = []
            for folder in frontier:
                try:
                    children = sorted(p for p in folder.iterdir() if p.is_dir())
                except OSError:
                    continue
                for child in children:
                    if child.name in SKIPPED or child.name.startswith("."):
                        continue
                    if (child / MANIFEST_NAME).is_file():
                        found.append(child)
                    else:
                        next_frontier.append(child)
            frontier = next_frontier
        return found

    def project(self, name_or_path: str) -> ProjectRef:
        """A project by its manifest name, its folder name, or a path to its folder."""
        candidate = Path(name_or_path)
        for base in (Path.cwd(), self.root):
            folder = (base / candidate).resolve()
            if (folder / MANIFEST_NAME).is_file():
                manifest, _ = load_manifest(folder)
                # A folder given by its path (inside the workspace or not) still may not take
                # the name of another project of the workspace.
                others = [r.path for r in self.projects()
                          if r.manifest is not None and r.manifest.name == manifest.name and r.path.resolve() != folder]
                if others:
                    raise ProjectClash(folder, manifest.name, others)
                return ProjectRef(folder, manifest)
        refs = self.projects()
        for ref in refs:
            if ref.name == name_or_path or ref.path.name == name_or_path:
                if ref.error:
                    raise ref.error
                return ref
        names = ", ".join(r.name for r in refs) or "none"
        raise ProjectNotFound(f"no project {name_or_path!r} in workspace {self.root} (projects: {names})")

    def folder_holds(self, folder: str | Path, name: str) -> bool:
        """Whether `folder` is a project named `name` now (it was not moved away or renamed)."""
        try:
            manifest, _ = load_manifest(Path(folder))
        except ManifestError:
            return False
        return manifest.name == name

    def init_project(self, folder: str, force: bool = False) -> tuple[ProjectRef, str]:
        """Write a first manifest for a folder of ML code (relative to the workspace, or a path);
        returns the project and the text written. Never overwrites one unless `force`."""
        path = Path(folder) if Path(folder).is_absolute() else self.root / folder
        path = path.resolve()
        if not path.is_dir():
            raise WorkbenchError(f"{path} is not a folder: put the project's code there first")
        target = path / MANIFEST_NAME
        if target.exists() and not force:
            raise WorkbenchError(f"{target} exists already: edit it, or pass --force to write a new one")
        files = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = [d for d in dirnames if d not in SKIPPED and not d.startswith(".")]
            rel = Path(dirpath).relative_to(path)
            files += [(rel / name).as_posix() for name in filenames]
            if len(files) > 100_000:
                break  # a data lake, not a project: what was seen is enough to find the scripts
        try:
            text = manifest_text(survey(path.name, files, read_python_sources(path, files)))
        except NothingToRun as exc:
            raise WorkbenchError(f"{path}: {exc}; add one (see projects/telco-churn for a complete example)") from None
        manifest = parse_manifest(text, str(target))  # never write a manifest that does not load
        try:
            target.write_text(text)
            self._dirs = None  # a new project: the next lookup walks the workspace again
        except OSError as exc:
            raise WorkbenchError(f"cannot write {target}: {exc.strerror}") from None
        return ProjectRef(path, manifest), text


def _with_clashes(refs: list[ProjectRef]) -> list[ProjectRef]:
    """Each project whose name another folder's manifest gives too, marked with the clash."""
    folders: dict[str, list[Path]] = {}
    for ref in refs:
        if ref.manifest is not None:
            folders.setdefault(ref.manifest.name, []).append(ref.path)
    marked = []
    for ref in refs:
        others = [p for p in folders.get(ref.manifest.name, []) if p != ref.path] if ref.manifest else []
        if others and ref.error is None:
            ref = ProjectRef(ref.path, ref.manifest, ProjectClash(ref.path, ref.manifest.name, others))
        marked.append(ref)
    return marked
