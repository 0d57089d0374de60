"""The one way this project writes files a user keeps: atomic, never over an input, and a folder
is only ever cleaned of files the tool itself wrote.

Every writer in the project (the commands, the Slicer logic's save and batch, the server's
records, the training exports, the demo) goes through this module, so the rules hold by
construction:

- **Atomic.** `atomic_path` / `atomic_open` write into a hidden temporary file in the target's
  own folder (``.ibisagent-tmp-*``, with the target's suffix so writers that choose the format
  by suffix still work), flush and fsync it, then `os.replace` it over the target (and fsync the
  folder). A crash or a kill at any moment leaves the old file or the new one, never a part of
  either; at worst a hidden temporary file is left beside it.
- **A set of outputs at once.** `OutputSet` checks all outputs of one run before the work starts
  (each folder writable, names distinct, none of them an input, none existing unless
  ``overwrite``), stages every file as a temporary one and commits them together at the end, so
  a failure leaves no half set: until `OutputSet.commit` nothing the user can see has changed.
- **Never an input.** Outputs are compared with inputs as *files*: `same_file` follows symbolic
  links and recognises hard links (`os.path.samefile`), not path strings. A symbolic link given
  as an output is replaced by the new file; the file it pointed to is never written through it.
- **Folders: only clean what you made.** `OwnedFolder` keeps a manifest
  (``.ibisagent-outputs.json``) of the files it wrote in a folder, each with its size and
  modification time. A later run with ``overwrite`` replaces those files and removes the ones it
  does not write again; it never deletes or replaces anything else. A file of the user's with
  the same name as one the run wants to write is refused, naming it; so is a file the tool wrote
  but someone changed since (its size or time no longer match the manifest).

Errors a user can fix raise `UnsafeOutputError` (a ValueError, so the commands print it as one
line with exit status 2). Standard library only; imports on Python 3.9.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from typing import IO, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

#: The manifest an `OwnedFolder` keeps of the files it wrote.
MANIFEST = ".ibisagent-outputs.json"
#: Temporary files start with this, so a reader (and a person) can tell them from outputs.
TEMP_PREFIX = ".ibisagent-tmp-"


class UnsafeOutputError(ValueError):
    """An output that would replace an input, repeat another output, replace an existing file
    without ``overwrite``, or land in a folder that cannot be written. One-line message."""


# -- identity ------------------------------------------------------------------------------------
def same_file(a: "os.PathLike[str] | str", b: "os.PathLike[str] | str") -> bool:
    """Whether two paths name the same file: links followed, hard links recognised. For paths
    that do not exist yet, whether they resolve to the same place."""
    a, b = os.fspath(a), os.fspath(b)
    if os.path.exists(a) and os.path.exists(b):
        try:
            return os.path.samefile(a, b)
        except OSError:
            pass
    return _resolved(a) == _resolved(b)


def _resolved(path: str) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


def _nearest_existing(folder: str) -> str:
    folder = os.path.abspath(folder)
    while not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def check_folder_writable(folder: str, option: str = "the output folder") -> None:
    """Refuse, before any work, a folder that cannot be created or written (read-only folder or
    file system, a file in the way). ``os.access`` answers for the real user, so a read-only
    file system is refused even for root (who may write into any folder of a writable one)."""
    existing = _nearest_existing(folder)
    if not os.path.isdir(existing):
        raise UnsafeOutputError(f"{option}: {existing} is a file, so {folder} cannot be a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UnsafeOutputError(f"{option}: the folder {existing} is not writable; choose another place.")


def check_outputs(outputs: Mapping[str, str], inputs: Iterable[Optional[str]] = (), overwrite: bool = False) -> None:
    """Check every output of one run before the work starts.

    ``outputs``: option name (as the user knows it, e.g. ``"--out"``) -> file path. ``inputs``:
    every file the run reads (None entries are ignored). Refuses an output that is a folder, is
    the same file as an input or as another output, already exists without ``overwrite``, or
    whose folder cannot be written.
    """
    inputs = [os.fspath(p) for p in inputs if p]
    seen: List[Tuple[str, str]] = []
    for option, path in outputs.items():
        path = os.fspath(path)
        if os.path.isdir(path):
            raise UnsafeOutputError(f"{option} {path} is a folder; give a file name.")
        for given in inputs:
            if same_file(path, given):
                raise UnsafeOutputError(f"{option} {path} must not overwrite an input: it is the same file as "
                                        f"{given}; choose a new file name.")
        for other_option, other in seen:
            if same_file(path, other):
                raise UnsafeOutputError(f"{option} and {other_option} are the same file ({path}); give each "
                                        "output its own name.")
        if os.path.lexists(path) and not overwrite:
            raise UnsafeOutputError(f"{option} {path} already exists; choose a new name or add --overwrite.")
        check_folder_writable(os.path.dirname(os.path.abspath(path)) or ".", option)
        seen.append((option, path))


# -- atomic writes -------------------------------------------------------------------------------
def _fsync_folder(folder: str) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _fsync_file(path: str) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _suffix(path: str) -> str:
    name = os.path.basename(path).lower()
    for double in (".nii.gz", ".seg.nrrd", ".tar.gz"):
        if name.endswith(double):
            return path[-len(double):]
    return os.path.splitext(path)[1]


def make_folders(folder: str) -> List[str]:
    """``os.makedirs(folder, exist_ok=True)``; returns the folders it made, outermost first."""
    missing = []
    folder = os.path.abspath(folder)
    while not os.path.isdir(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    if missing:
        os.makedirs(missing[0], exist_ok=True)
    return missing[::-1]


def remove_empty_folders(folders: Iterable[str]) -> None:
    """Remove the folders (made by this run) that are empty, innermost first."""
    for folder in sorted(folders, key=len, reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def temporary_path(path: str) -> str:
    """A new, empty, hidden file in ``path``'s folder with ``path``'s suffix (writers such as
    SimpleITK choose the format by suffix); the folder is made if needed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=_suffix(path), dir=folder)
    os.close(descriptor)
    return temporary


def _discard(temporary: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(temporary)


def _install(temporary: str, path: str) -> None:
    """fsync the finished temporary file and swap it in over ``path`` in one rename."""
    _fsync_file(temporary)
    _replace(temporary, path)
    _fsync_folder(os.path.dirname(os.path.abspath(path)))


def _replace(temporary: str, path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        raise UnsafeOutputError(f"{path} is a folder; a file was to be written there.")
    _keep_mode(temporary, path)
    os.replace(temporary, path)


def _keep_mode(temporary: str, path: str) -> None:
    """mkstemp files are private (0600); give the new file the mode an ordinary new file gets
    (or the mode of the file it replaces)."""
    try:
        mode = os.lstat(path).st_mode & 0o777 if not os.path.islink(path) else None
    except OSError:
        mode = None
    if mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    with contextlib.suppress(OSError):
        os.chmod(temporary, mode)


@contextlib.contextmanager
def atomic_path(path: "os.PathLike[str] | str") -> Iterator[str]:
    """Yield a temporary path to write ``path``'s content to (any writer: SimpleITK, Pillow,
    matplotlib, numpy); on leaving the block it replaces ``path`` at once. On an error (or
    Ctrl+C) the temporary file is removed and ``path`` is untouched."""
    path = os.fspath(path)
    temporary = temporary_path(path)
    try:
        yield temporary
        _install(temporary, path)
    except OSError as error:
        _discard(temporary)
        raise _write_failed(error, path, temporary) from error
    except BaseException:
        _discard(temporary)
        raise


@contextlib.contextmanager
def atomic_open(path: "os.PathLike[str] | str", mode: str = "w", encoding: Optional[str] = "utf-8",
                newline: Optional[str] = None) -> Iterator[IO]:
    """`open` for writing, atomically (see `atomic_path`). ``mode``: "w" or "wb"."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files; mode must be 'w' or 'wb', not {mode!r}.")
    with atomic_path(path) as temporary:
        if mode == "wb":
            with open(temporary, "wb") as handle:
                yield handle
        else:
            with open(temporary, "w", encoding=encoding, newline=newline) as handle:
                yield handle


def _write_failed(error: OSError, target: str, temporary: str) -> OSError:
    """The error of a failed write, about the file the user named rather than the hidden
    temporary one (nothing was replaced)."""
    reason = error.strerror or str(error).replace(temporary, target)
    failed = OSError(f"Could not write {target} ({reason}); nothing was replaced.")
    failed.errno = error.errno
    return failed


def write_bytes(path: "os.PathLike[str] | str", data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text(path: "os.PathLike[str] | str", text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def json_text(document: object, indent: Optional[int] = 2) -> str:
    """The JSON text every writer here uses; NaN and infinity are refused (they are not JSON)."""
    return json.dumps(document, indent=indent, allow_nan=False, ensure_ascii=False) + "\n"


def write_json(path: "os.PathLike[str] | str", document: object, indent: Optional[int] = 2) -> None:
    """JSON, atomically (see `json_text`)."""
    write_text(path, json_text(document, indent))


def _write_temporary(temporary: str, text_or_bytes) -> None:
    if isinstance(text_or_bytes, bytes):
        with open(temporary, "wb") as handle:
            handle.write(text_or_bytes)
    else:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text_or_bytes)


# -- several outputs, committed together -----------------------------------------------------------
class OutputSet:
    """The files one run writes, checked before the work and committed together at the end.

    ::

        pictures = OwnedFolder(args.pictures, args.overwrite, "--pictures", names=...) if args.pictures else None
        outputs = OutputSet({"--out": out, "--log": log}, inputs=[image, mask], overwrite=args.overwrite,
                            folders=[pictures])
        ...                                    # the work; nothing is written yet
        with outputs.stage("--out") as tmp:    # write each output to its temporary file
            sitk.WriteImage(image, tmp)
        outputs.write_json("--log", document)
        with pictures.add("step_01.png") as tmp: ...
        outputs.commit()                       # every file replaced at once, folders included

    Until `commit` the targets are untouched; `discard` (or leaving a ``with OutputSet(...)``
    block by an exception) removes the staged files, the folders' included. ``folders``:
    `OwnedFolder` s whose files (staged with `OwnedFolder.add`) are part of the set (None
    entries are ignored).
    """

    def __init__(self, outputs: Mapping[str, str], inputs: Iterable[Optional[str]] = (),
                 overwrite: bool = False, folders: Sequence[Optional["OwnedFolder"]] = ()) -> None:
        self.paths: Dict[str, str] = {name: os.fspath(path) for name, path in outputs.items()}
        check_outputs(self.paths, inputs, overwrite)
        self.folders = [folder for folder in folders if folder is not None]
        for folder in self.folders:
            for option, path in self.paths.items():
                if same_file(path, folder.folder):
                    raise UnsafeOutputError(f"{option} {path} is the folder {folder.option}; give a file name.")
        self._staged: Dict[str, str] = {}
        self._made: List[str] = []

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, kind, _value, _traceback) -> None:
        if kind is not None:
            self.discard()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[str]:
        """A temporary path for output ``name``; it becomes the output at `commit`."""
        if name not in self.paths:
            raise KeyError(f"{name!r} is not one of this run's outputs ({', '.join(self.paths)}).")
        if name in self._staged:
            _discard(self._staged.pop(name))
        self._made += make_folders(os.path.dirname(os.path.abspath(self.paths[name])))
        temporary = temporary_path(self.paths[name])
        try:
            yield temporary
        except OSError as error:
            _discard(temporary)
            raise _write_failed(error, self.paths[name], temporary) from error
        except BaseException:
            _discard(temporary)
            raise
        self._staged[name] = temporary

    def write_json(self, name: str, document: object, indent: Optional[int] = 2) -> None:
        text = json_text(document, indent)
        with self.stage(name) as temporary:
            _write_temporary(temporary, text)

    def write_text(self, name: str, text: str) -> None:
        with self.stage(name) as temporary:
            _write_temporary(temporary, text)

    def commit(self) -> List[str]:
        """Replace every staged output (all must be staged), then install the folders' staged
        files; returns the paths written."""
        missing = [name for name in self.paths if name not in self._staged]
        if missing:
            self.discard()
            raise RuntimeError(f"Outputs never written: {', '.join(missing)}; nothing was replaced.")
        for temporary in self._staged.values():
            _fsync_file(temporary)
        for folder in self.folders:
            folder.prepare_commit()
        written = []
        for name, temporary in list(self._staged.items()):
            path = self.paths[name]
            _replace(temporary, path)
            del self._staged[name]
            written.append(path)
        for folder in {os.path.dirname(os.path.abspath(p)) for p in written}:
            _fsync_folder(folder)
        for folder in self.folders:
            written.extend(folder.commit())
        return written

    def discard(self) -> None:
        """Remove every staged file (the folders' too) and the folders made for them."""
        for temporary in self._staged.values():
            _discard(temporary)
        self._staged.clear()
        for folder in self.folders:
            folder.discard()
        remove_empty_folders(self._made)
        self._made = []


# -- folders the tool owns -----------------------------------------------------------------------
def _stamp(path: str) -> Optional[List[int]]:
    """(size, modification time in ns) of a regular file, to tell later whether it changed."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return [int(info.st_size), int(info.st_mtime_ns)]


class OwnedFolder:
    """A folder of outputs (pictures, exports, evaluation results) with a manifest of the files
    this tool wrote there, so it only ever replaces or removes its own files.

    ``kind`` names the run that writes (``"eval"``, ``"export llamafactory"``...): runs of
    different kinds may share a folder, each owning only its own files. ``names``: the file
    names (relative, ``/``-separated) this run will write, when known before the work; they are
    checked at once (names written later are checked as they are written). ``what`` says in
    messages what an earlier run left (``"the results of an evaluation"``).

    - A new folder is created (when the first file is written) and owned.
    - A folder holding files an earlier run of the same kind wrote is refused unless
      ``overwrite``; with it the run may replace those files, and `finish` removes those it did
      not write again.
    - Any other file in the folder is not this run's: writing a file of that name is refused
      (naming it); other names are fine, so a run may add files to a folder of the user's. A
      listed file whose size or modification time changed since it was written is the user's.
    - Inputs (``inputs``: files or folders) can never be written, and the folder itself can be
      no input folder.

    Two ways to write: `stage` (and `open`, `write_text`, `write_json`) installs each file as
    soon as it is written (exports, records: a killed run keeps what it finished); `add` stages
    the file and `commit` installs every staged file at once (the outputs of one run, alone or
    in an `OutputSet`). The manifest names a file before it is installed, so a killed run still
    leaves a manifest naming everything it may have written; `finish` (which `commit` calls)
    rewrites it with the files' stamps.
    """

    def __init__(self, folder: "os.PathLike[str] | str", overwrite: bool = False, option: str = "--out",
                 names: Sequence[str] = (), inputs: Iterable[Optional[str]] = (), kind: str = "outputs",
                 what: str = "the outputs of an earlier run") -> None:
        self.folder = os.path.abspath(os.fspath(folder))
        self.option = option
        self.overwrite = overwrite
        self.kind = kind
        self.inputs = [os.fspath(p) for p in inputs if p]
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise UnsafeOutputError(f"{option} {folder} is a file; give a folder.")
        for given in self.inputs:
            if os.path.isdir(given) and same_file(self.folder, given):
                raise UnsafeOutputError(f"{option} {folder} is an input folder; write the results to a new folder.")
        check_folder_writable(self.folder, option)
        self._made: List[str] = []  # folders this object made (absolute), removed by `discard` if empty
        #: Files an earlier run of this kind wrote here, unchanged since: name -> stamp (None: unknown).
        self.earlier: Dict[str, Optional[List[int]]] = {}
        #: Files runs of other kinds wrote here, unchanged since: name -> (kind, stamp).
        self._others: Dict[str, Tuple[str, Optional[List[int]]]] = {}
        self._earlier_folders: List[str] = []
        self._read_manifest()
        if self.earlier and not overwrite:
            raise UnsafeOutputError(f"{option} {folder} already holds {what} (e.g. {sorted(self.earlier)[0]}); "
                                    "choose a new folder or add --overwrite.")
        #: Names this run wrote (installed), in order.
        self.written: List[str] = []
        self._declared: List[str] = []
        self._on_disk: Optional[set] = None  # the names the manifest on disk lists
        self._created_folders: List[str] = []
        self._pending: Dict[str, str] = {}
        self.declare(names)

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.folder, MANIFEST)

    def path(self, name: str) -> str:
        """The full path of the output ``name`` (checked: not the user's file, not an input)."""
        self._check_name(name)
        return os.path.join(self.folder, *name.split("/"))

    def declare(self, names: Iterable[str]) -> None:
        """Check names this run will write, before the work (one manifest write covers them)."""
        for name in names:
            self._check_name(name)
            if name not in self._declared:
                self._declared.append(name)

    # -- the manifest ------------------------------------------------------------------------------
    def _read_manifest(self) -> None:
        try:
            with open(self.manifest_path, encoding="utf-8") as handle:
                document = json.load(handle)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            raise UnsafeOutputError(f"{self.option} {self.folder}: its list of earlier outputs ({MANIFEST}) cannot "
                                    f"be read ({error}); choose a new folder.") from None
        if not isinstance(document, dict):
            return
        stamps = document.get("stamps") if isinstance(document.get("stamps"), dict) else {}
        kinds = document.get("kinds") if isinstance(document.get("kinds"), dict) else {}
        for name in document.get("files", []):
            name = str(name)
            if not _is_relative_name(name):
                continue
            target = os.path.join(self.folder, *name.split("/"))
            if not os.path.lexists(target) or os.path.islink(target):
                continue
            stamp = stamps.get(name)
            if stamp is not None and _stamp(target) != list(stamp):
                continue  # changed since it was written: the user's now
            kind = str(kinds.get(name, self.kind))
            if kind == self.kind:
                self.earlier[name] = stamp
            else:
                self._others[name] = (kind, stamp)
        self._earlier_folders = [str(f) for f in document.get("folders", []) if _is_relative_name(str(f))]

    def _names(self) -> List[str]:
        return sorted(set(self.earlier) | set(self.written) | set(self._declared) | set(self._pending))

    def _write_manifest(self, final: bool = False) -> None:
        names = self._names()
        stamps: Dict[str, List[int]] = {}
        kinds = {name: kind for name, (kind, _stamp_) in self._others.items()}
        for name, (_kind, stamp) in self._others.items():
            if stamp is not None:
                stamps[name] = stamp
        for name in names:
            kinds[name] = self.kind
            if name in self.written and final:
                stamp = _stamp(os.path.join(self.folder, *name.split("/")))
            elif name in self.earlier and name not in self._declared and name not in self._pending:
                stamp = self.earlier[name]
            else:
                stamp = None  # may be rewritten by this run: no stamp until it is
            if stamp is not None:
                stamps[name] = stamp
        folders = sorted(set(self._earlier_folders) | set(self._created_folders))
        self._made += make_folders(self.folder)
        write_json(self.manifest_path, {"tool": "ibisagent", "files": sorted(kinds), "kinds": kinds,
                                        "stamps": stamps, "folders": folders})
        self._on_disk = set(names)

    def _announce(self, name: str) -> None:
        """Make sure the manifest on disk names ``name`` before the file is installed."""
        if self._on_disk is None or name not in self._on_disk:
            if name not in self._declared:
                self._declared.append(name)
            self._write_manifest()

    # -- checks --------------------------------------------------------------------------------------
    def _check_name(self, name: str) -> None:
        if not _is_relative_name(name) or name == MANIFEST:
            raise ValueError(f"Not an output name inside a folder: {name!r}.")
        target = os.path.join(self.folder, *name.split("/"))
        for given in self.inputs:
            if same_file(target, given):
                raise UnsafeOutputError(f"{self.option} {self.folder}: writing {name} would replace the input "
                                        f"{given}; write the results to a new folder.")
        if name in self._others:
            raise UnsafeOutputError(f"{self.option} {self.folder} already holds {name}, written by another ibisagent "
                                    f"run ({self._others[name][0]}); choose a new folder.")
        ours = name in self.earlier or name in self.written or name in self._declared
        if os.path.lexists(target) and not ours:
            raise UnsafeOutputError(f"{self.option} {self.folder} already holds {name}, which this tool did not "
                                    "write (or which was changed since); choose a new folder (your files are never "
                                    "replaced).")

    def _make_parent(self, target: str) -> None:
        made = make_folders(os.path.dirname(target))
        self._made += made
        for folder in made:
            if folder.startswith(self.folder + os.sep):
                self._created_folders.append(os.path.relpath(folder, self.folder).replace(os.sep, "/"))

    # -- writing at once -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[str]:
        """A temporary path for the file ``name``; it replaces the target when the block ends."""
        target = self.path(name)
        self._announce(name)
        self._make_parent(target)
        with atomic_path(target) as temporary:
            yield temporary
        if name not in self.written:
            self.written.append(name)

    @contextlib.contextmanager
    def open(self, name: str, mode: str = "w", newline: Optional[str] = None) -> Iterator[IO]:
        with self.stage(name) as temporary:
            if mode == "wb":
                with open(temporary, "wb") as handle:
                    yield handle
            else:
                with open(temporary, "w", encoding="utf-8", newline=newline) as handle:
                    yield handle

    def write_text(self, name: str, text: str) -> None:
        with self.stage(name) as temporary:
            _write_temporary(temporary, text)

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.stage(name) as temporary:
            _write_temporary(temporary, data)

    def write_json(self, name: str, document: object, indent: Optional[int] = 2) -> None:
        self.write_text(name, json_text(document, indent))

    # -- writing together ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def add(self, name: str) -> Iterator[str]:
        """A temporary path for the file ``name``, installed by `commit` with the others."""
        target = self.path(name)
        self._make_parent(target)
        if name in self._pending:
            _discard(self._pending.pop(name))
        temporary = temporary_path(target)
        try:
            yield temporary
        except OSError as error:
            _discard(temporary)
            raise _write_failed(error, target, temporary) from error
        except BaseException:
            _discard(temporary)
            raise
        self._pending[name] = temporary

    def add_text(self, name: str, text: str) -> None:
        with self.add(name) as temporary:
            _write_temporary(temporary, text)

    def add_json(self, name: str, document: object, indent: Optional[int] = 2) -> None:
        self.add_text(name, json_text(document, indent))

    def prepare_commit(self) -> None:
        """fsync the staged files and name them in the manifest (the first half of `commit`)."""
        for temporary in self._pending.values():
            _fsync_file(temporary)
        if self._pending and (self._on_disk is None or not set(self._pending) <= self._on_disk):
            self._write_manifest()

    def commit(self) -> List[str]:
        """Install every file staged with `add`, then `finish`; returns the paths installed."""
        self.prepare_commit()
        installed = []
        for name, temporary in list(self._pending.items()):
            target = os.path.join(self.folder, *name.split("/"))
            _replace(temporary, target)
            del self._pending[name]
            if name not in self.written:
                self.written.append(name)
            installed.append(target)
        _fsync_folder(self.folder)
        self.finish()
        return installed

    def discard(self) -> None:
        """Remove the files staged with `add` (nothing installed changes), and the folders made
        for them if nothing else is in them."""
        for temporary in self._pending.values():
            _discard(temporary)
        self._pending.clear()
        if not self.written:
            remove_empty_folders(self._made)

    def finish(self, remove_stale: bool = True) -> List[str]:
        """End the run: files an earlier run of this kind wrote here that this one did not write
        again are removed (they are ours and stale; kept, and still listed as ours, with
        ``remove_stale`` False), then the folders the tool made for them if that leaves them
        empty; the manifest is rewritten with every file's stamp. Returns the names removed."""
        if self._pending:
            raise RuntimeError("Files staged with add() were never committed; call commit() or discard().")
        removed = []
        stale = [n for n in self.earlier if n not in self.written]
        for name in stale if remove_stale else ():
            target = os.path.join(self.folder, *name.split("/"))
            try:
                if os.path.isfile(target) and not os.path.islink(target):
                    os.remove(target)
                    removed.append(name)
            except OSError as error:
                if error.errno != errno.ENOENT:
                    raise
        if remove_stale:  # a folder still holding files (the user's, or ours) is kept
            remove_empty_folders(os.path.join(self.folder, *folder.split("/"))
                                 for folder in set(self._earlier_folders) | set(self._created_folders))
        self.earlier = {} if remove_stale else {name: _stamp(os.path.join(self.folder, *name.split("/")))
                                                for name in stale}
        self._declared = []
        self._earlier_folders = [f for f in set(self._earlier_folders) | set(self._created_folders)
                                 if os.path.isdir(os.path.join(self.folder, *f.split("/")))]
        self._created_folders = []
        if self.written or self.earlier or os.path.exists(self.manifest_path):
            self._write_manifest(final=True)
        return removed


def _is_relative_name(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and not os.path.isabs(name) and "\\" not in name and all(p not in ("", ".", "..") for p in parts)
