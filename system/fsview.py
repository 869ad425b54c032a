"""A read-only view of /proc and /sys: live, recording, or replaying a saved snapshot.

Every reader in iommu_trace.system goes through `FsView`, so one code path
serves the live machine, the tests and a user's bug-report snapshot.

A snapshot directory holds the regular files that were read, at their paths
under the root (``proc/cmdline``, ``sys/bus/pci/devices/.../vendor``), plus
``snapshot.json``: the directory listings, symlink targets, read errors and
non-file data (boot log lines, netlink dumps) seen while recording.  Symlinks
are stored as text, never as links: sysfs links form cycles and point outside
the snapshot, which would trip git, pytest and copy tools.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import time
from collections.abc import Callable
from typing import Any

MANIFEST = "snapshot.json"
MANIFEST_FORMAT = 1
# dirs: listings; links: symlink targets; errors: why a read failed;
# exists: answers to exists(); data: non-file values (boot log, netlink).
_SECTIONS = ("dirs", "links", "errors", "exists", "data")


def _rel(path: str) -> str:
    """Normalise a path to the root-relative form used as manifest keys."""
    return posixpath.normpath(path.lstrip("/")) if path.strip("/") else "."


class FsView:
    """Reads files under `root`; replays `root/snapshot.json` when there is one."""

    def __init__(self, root: str = "/", record: bool = False) -> None:
        self.root = root
        self.live = not os.path.exists(os.path.join(root, MANIFEST))
        self.record = record
        # Live facts that are not files (boot log, netlink, imports) belong to this
        # machine only: a copied tree under another root has none.
        self.here = self.live and os.path.realpath(root) == "/"
        self._manifest: dict[str, Any] = {k: {} for k in _SECTIONS}
        self._files: dict[str, bytes] = {}
        if not self.live:
            with open(os.path.join(root, MANIFEST)) as f:
                self._manifest.update(json.load(f))

    # -- raw access -------------------------------------------------------

    def _host(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def read_bytes(self, path: str) -> bytes | None:
        """The file's bytes, or None if missing or unreadable (the reason is kept)."""
        rel = _rel(path)
        if not self.live and rel in self._manifest["errors"]:
            return None
        try:
            data = self._open_read(rel)
        except OSError as e:
            if self.record and e.errno != errno.ENOENT:
                self._manifest["errors"][rel] = e.strerror or str(e)
            return None
        if self.record:
            self._files[rel] = data
        return data

    def _open_read(self, rel: str) -> bytes:
        candidates = [rel] if self.live else [rel, self.resolve(rel)]
        for i, cand in enumerate(candidates):
            try:
                with open(self._host(cand), "rb") as f:
                    return f.read()
            except FileNotFoundError:
                if i == len(candidates) - 1:
                    raise
        raise FileNotFoundError(rel)

    def read_text(self, path: str) -> str | None:
        data = self.read_bytes(path)
        return None if data is None else data.decode("utf-8", "replace")

    def read_attr(self, path: str) -> str | None:
        """A one-value sysfs attribute, stripped; None when absent or unreadable."""
        text = self.read_text(path)
        return None if text is None else text.strip()

    def error(self, path: str) -> str | None:
        """Why the last read of `path` failed (replay and record modes only)."""
        return self._manifest["errors"].get(_rel(path))

    def listdir(self, path: str) -> list[str]:
        """Sorted entry names; [] when the directory is missing or unreadable."""
        rel = _rel(path)
        if not self.live:
            target = self.resolve(rel)
            for cand in (rel, target):
                if cand in self._manifest["dirs"]:
                    return list(self._manifest["dirs"][cand])
            for cand in (rel, target):
                try:
                    return sorted(os.listdir(self._host(cand)))
                except OSError:
                    pass
            return []
        try:
            names = sorted(os.listdir(self._host(rel)))
        except OSError as e:
            if self.record and e.errno != errno.ENOENT:
                self._manifest["errors"][rel] = e.strerror or str(e)
            return []
        if self.record:
            self._manifest["dirs"][rel] = names
        return names

    def exists(self, path: str) -> bool:
        rel = _rel(path)
        if self.live:
            found = os.path.lexists(self._host(rel))
            if self.record:
                self._manifest["exists"][rel] = found
            return found
        if rel in self._manifest["exists"]:
            return bool(self._manifest["exists"][rel])
        if rel in self._manifest["dirs"] or rel in self._manifest["links"]:
            return True
        parent, name = posixpath.split(rel)
        if name in self._manifest["dirs"].get(parent, ()):
            return True
        return os.path.lexists(self._host(rel)) or os.path.lexists(self._host(self.resolve(rel)))

    def readlink(self, path: str) -> str | None:
        """The symlink's target text, or None when `path` is not a link."""
        rel = _rel(path)
        if not self.live:
            links = self._manifest["links"]
            parent, name = posixpath.split(rel)
            return links.get(rel, links.get(_rel(posixpath.join(self.resolve(parent), name))))
        try:
            target = os.readlink(self._host(rel))
        except OSError:
            return None
        if self.record:
            self._manifest["links"][rel] = target
        return target

    def realpath(self, path: str) -> str:
        """Root-relative path with every symlink resolved (through the manifest on replay)."""
        rel = _rel(path)
        if self.live:
            # Record each link on the way so replay can resolve the same chain.
            parts, done = rel.split("/"), "."
            for _ in range(64):
                if not parts:
                    break
                done = _rel(posixpath.join(done, parts.pop(0)))
                target = self.readlink(done)
                if target is not None:
                    joined = posixpath.join(posixpath.dirname(done), target)
                    parts = _rel(joined).split("/") + parts
                    done = "."
            return done
        return self.resolve(rel)

    def resolve(self, rel: str) -> str:
        """Resolve manifest links in a root-relative path (replay mode)."""
        parts, done = _rel(rel).split("/"), "."
        for _ in range(256):  # bound: a malformed manifest must not loop forever
            if not parts:
                break
            done = _rel(posixpath.join(done, parts.pop(0)))
            target = self._manifest["links"].get(done)
            if target is not None:
                parts = _rel(posixpath.join(posixpath.dirname(done), target)).split("/") + parts
                done = "."
        return done

    # -- non-file data (boot log, netlink) --------------------------------

    def data(self, name: str, produce: Callable[[], Any]) -> Any:
        """Live: call `produce` (and record its JSON-able result). Replay: the saved value.

        None under a root that is neither "/" nor a snapshot: nothing to ask there.
        """
        if not self.live:
            return self._manifest["data"].get(name)
        if not self.here:
            return None
        value = produce()
        if self.record:
            self._manifest["data"][name] = value
        return value

    # -- saving -----------------------------------------------------------

    def save(self, dest: str, about: dict[str, Any] | None = None) -> list[str]:
        """Write what was read so far into `dest`; returns the root-relative files written."""
        if not self.record:
            raise ValueError("FsView.save needs a view made with record=True")
        os.makedirs(dest, exist_ok=True)
        written = []
        for rel, data in sorted(self._files.items()):
            host = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(host), exist_ok=True)
            with open(host, "wb") as f:
                f.write(data)
            written.append(rel)
        old: dict[str, Any] = {}
        manifest_path = os.path.join(dest, MANIFEST)
        if os.path.exists(manifest_path):  # several collectors may save into one snapshot
            with open(manifest_path) as f:
                old = json.load(f)
        merged: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "about": {**old.get("about", {}), **(about or {})},
        }
        for key in _SECTIONS:
            merged[key] = {**old.get(key, {}), **self._manifest[key]}
            merged[key] = dict(sorted(merged[key].items()))
        with open(manifest_path, "w") as f:
            json.dump(merged, f, indent=1, sort_keys=False)
            f.write("\n")
        return written
