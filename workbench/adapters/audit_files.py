"""The audit trail's key and anchor: two small files kept outside the database.

    .workbench/audit/key          32 random bytes, 0600: MACs the chain and the version seals
    .workbench/audit/anchor.json  the chain's head after the last commit, MAC'd with the key

An edit made with DuckDB alone cannot re-MAC a row without the key, nor hide deleted newest
rows from the anchor. (Whoever can write these files too is the workspace's owner; against
them, keep a copy of the key elsewhere.) The anchor is replaced atomically (temporary file,
fsync, rename), under a lock, and only ever by a newer head, so writers that commit in one
order and anchor in another never move it backwards.
"""

from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from workbench.adapters.disk_writes import fsync_dir, write_new_file
from workbench.adapters.locks import file_lock
from workbench.core.audit import Anchor, anchor_mac, same_mac
from workbench.core.errors import WorkbenchError

KEY_BYTES = 32


class AuditFiles:
    def __init__(self, folder: Path):
        self.folder = folder
        """`.workbench/audit`"""
        self._key: bytes | None = None

    @property
    def key_path(self) -> Path:
        return self.folder / "key"

    @property
    def anchor_path(self) -> Path:
        return self.folder / "anchor.json"

    @contextmanager
    def locked(self, timeout_s: float = 60.0) -> Iterator[None]:
        """Serialise key creation and anchor writes across processes (held for milliseconds)."""
        with file_lock(self.folder / ".lock", timeout_s, "the audit anchor"):
            yield

    # -- the key -----------------------------------------------------------------------------

    def key(self) -> bytes | None:
        """The key, or None when this workspace has none yet."""
        if self._key is None:
            try:
                data = self.key_path.read_bytes()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise WorkbenchError(f"cannot read the audit key {self.key_path}: {exc.strerror}") from None
            if len(data) != KEY_BYTES:
                raise WorkbenchError(f"the audit key {self.key_path} is {len(data)} bytes, not {KEY_BYTES}: it was "
                                     "replaced or cut; restore it from a backup")
            self._key = data
        return self._key

    def create_key(self) -> bytes:
        """A new random key, written 0600 before anything is MAC'd with it (call under `locked`)."""
        self._mkdir()
        key = secrets.token_bytes(KEY_BYTES)
        tmp = self.folder / f".key.{secrets.token_hex(4)}.tmp"
        try:
            write_new_file(tmp, key)
            os.link(tmp, self.key_path)  # fails if another process made one meanwhile: never replace a key
            fsync_dir(self.folder)
        except FileExistsError:
            self._key = None
            return self.key()  # type: ignore[return-value]
        except OSError as exc:
            raise WorkbenchError(f"cannot write the audit key {self.key_path}: {exc.strerror}") from None
        finally:
            tmp.unlink(missing_ok=True)
        self._key = key
        return key

    # -- the anchor --------------------------------------------------------------------------

    def read_anchor(self, key: bytes) -> tuple[Anchor | None, str]:
        """(anchor, problem): None and '' when there is no file; None and the problem when the
        file is unreadable or its MAC does not match (edited by hand)."""
        try:
            data = json.loads(self.anchor_path.read_text())
        except FileNotFoundError:
            return None, ""
        except (OSError, ValueError) as exc:
            return None, f"the anchor {self.anchor_path} cannot be read: {exc}"
        try:
            anchor = Anchor(count=int(data["count"]), last_id=data["last_id"], head=str(data["head"]),
                            sealed=int(data["sealed"]), keyed_from=int(data["keyed_from"]))
            mac = str(data["mac"])
        except (KeyError, TypeError, ValueError):
            return None, f"the anchor {self.anchor_path} is not an anchor the workbench wrote"
        if not same_mac(mac, anchor_mac(key, anchor)):
            return None, f"the anchor {self.anchor_path} was edited: its MAC does not match"
        return anchor, ""

    def write_anchor(self, key: bytes, anchor: Anchor) -> None:
        """Replace the anchor atomically (call under `locked`)."""
        self._mkdir()
        body = json.dumps(anchor.as_dict() | {"mac": anchor_mac(key, anchor)}, sort_keys=True) + "\n"
        tmp = self.folder / f".anchor.{secrets.token_hex(4)}.tmp"
        try:
            write_new_file(tmp, body.encode())
            # No directory fsync: a rename lost to a power cut leaves the previous anchor, one
            # commit behind, which verifying recognises and repairs.
            os.replace(tmp, self.anchor_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise WorkbenchError(f"cannot write the audit anchor {self.anchor_path}: {exc.strerror}") from None

    def _mkdir(self) -> None:
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkbenchError(f"cannot create {self.folder}: {exc.strerror}") from None
