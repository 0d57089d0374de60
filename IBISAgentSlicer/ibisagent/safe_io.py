"""The one way this project writes files a user keeps: atomic, never over an input, and a folder
is only ever cleaned of files the tool itself wrote.

Every writer in the project (the commands, the Slicer logic's save and batch, the server's
records, the training exports, the demo) goes through this module, so the rules hold by
construction:

- **Atomic.** `atomic_path` / `atomic_open` write into a hidden temporary file in the target's
  own folder, flush and fsync it, then `os.replace` it over the target (and fsync the folder).
  A crash or a kill at any moment leaves the old file or the new one, never a part of either.
- **A set of outputs at once.** `OutputSet` checks all outputs of one run before the work starts
  (each folder writable, names distinct, none of them an input, none existing unless
  ``overwrite``), stages every file as a temporary one and commits them together at the end, so
  a failure leaves no half set: until `OutputSet.commit` nothing the user can see has changed.
- **Never an input.** Outputs are compared with inputs as *files*: `same_file` follows symbolic
  links and recognises hard links (`os.path.samefile`), not path strings.
- **Folders: only clean what you made.** `OwnedFolder` keeps a manifest
  (``.ibisagent-outputs.json``) of the files it wrote in a folder. A later run with
  ``overwrite`` replaces those files and removes the ones it does not write again; it never
  deletes or replaces anything else. A file of the user's with the same name as one the run
  wants to write is refused, naming it.

Errors a user can fix raise `UnsafeOutputError` (a ValueError, so the commands print it as one
line with exit status 2). Standard library only; imports on Python 3.9.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from typing import IO, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

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
    """Refuse, before any work, a folder that cannot be created or written (read-only, a file in
    the way)."""
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
    seen: List[tuple] = []
    for option, path in outputs.items():
        path = os.fspath(path)
        if os.path.isdir(path):
            raise UnsafeOutputError(f"{option} {path} is a folder; give a file name.")
        for given in inputs:
            if same_file(path, given):
                raise UnsafeOutputError(f"{option} {path} is the input file {given}; choose a new file name "
                                        "(inputs are never written over).")
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


def temporary_path(path: str) -> str:
    """A new, empty, hidden file in ``path``'s folder with ``path``'s suffix (writers such as
    SimpleITK choose the format by suffix)."""
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
    if os.path.isdir(path):
        raise UnsafeOutputError(f"{path} is a folder; a file was to be written there.")
    _keep_mode(temporary, path)
    os.replace(temporary, path)
    _fsync_folder(os.path.dirname(os.path.abspath(path)))


def _keep_mode(temporary: str, path: str) -> None:
    """mkstemp files are private (0600); give the new file the mode an ordinary new file gets
    (or the mode of the file it replaces)."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    with contextlib.suppress(OSError):
        os.chmod(temporary, mode)


@contextlib.contextmanager
def atomic_path(path: "os.PathLike[str] | str") -> Iterator[str]:
    """Yield a temporary path to write ``path``'s content to (any writer: SimpleITK, Pillow,
    matplotlib); on leaving the block it replaces ``path`` at once. On an error the temporary
    file is removed and ``path`` is untouched."""
    path = os.fspath(path)
    temporary = temporary_path(path)
    try:
        yield temporary
        _install(temporary, path)
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


def write_bytes(path: "os.PathLike[str] | str", data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text(path: "os.PathLike[str] | str", text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: "os.PathLike[str] | str", document: object, indent: Optional[int] = 2) -> None:
    """JSON, atomically; NaN and infinity are refused (they are not JSON)."""
    write_text(path, json.dumps(document, indent=indent, allow_nan=False) + "\n")


# -- several outputs, committed together -----------------------------------------------------------
class OutputSet:
    """The files one run writes, checked before the work and committed together at the end.

    ::

        outputs = OutputSet({"--out": out, "--log": log}, inputs=[image, mask], overwrite=args.overwrite)
        ...                                    # the work; nothing is written yet
        with outputs.stage("--out") as tmp:    # write each output to its temporary file
            sitk.WriteImage(image, tmp)
        outputs.write_json("--log", document)
        outputs.commit()                       # every file replaced at once, in order

    Until `commit` the targets are untouched; `discard` (or leaving a ``with OutputSet(...)``
    block by an exception) removes the staged files.
    """

    def __init__(self, outputs: Mapping[str, str], inputs: Iterable[Optional[str]] = (),
                 overwrite: bool = False) -> None:
        self.paths: Dict[str, str] = {name: os.fspath(path) for name, path in outputs.items()}
        check_outputs(self.paths, inputs, overwrite)
        self._staged: Dict[str, str] = {}

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
        temporary = temporary_path(self.paths[name])
        try:
            yield temporary
        except BaseException:
            _discard(temporary)
            raise
        self._staged[name] = temporary

    def write_json(self, name: str, document: object, indent: Optional[int] = 2) -> None:
        text = json.dumps(document, indent=indent, allow_nan=False) + "\n"
        with self.stage(name) as temporary, open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)

    def write_text(self, name: str, text: str) -> None:
        with self.stage(name) as temporary, open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)

    def commit(self) -> List[str]:
        """Replace every staged output (all must be staged); returns the paths written."""
        missing = [name for name in self.paths if name not in self._staged]
        if missing:
            self.discard()
            raise RuntimeError(f"Outputs never written: {', '.join(missing)}; nothing was replaced.")
        for temporary in self._staged.values():
            _fsync_file(temporary)
        written = []
        for name, temporary in list(self._staged.items()):
            path = self.paths[name]
            _keep_mode(temporary, path)
            os.replace(temporary, path)
            del self._staged[name]
            written.append(path)
        for folder in {os.path.dirname(os.path.abspath(p)) for p in written}:
            _fsync_folder(folder)
        return written

    def discard(self) -> None:
        for temporary in self._staged.values():
            _discard(temporary)
        self._staged.clear()


# -- folders the tool owns -----------------------------------------------------------------------
class OwnedFolder:
    """A folder of outputs (pictures, exports, evaluation results) with a manifest of the files
    this tool wrote there, so it only ever replaces or removes its own files.

    ``names``: the file names (relative, ``/``-separated) this run will write, when known before
    the work; they are checked at once. Names written later are checked as they are written.

    - A new folder is created and owned.
    - A folder with a manifest from an earlier run is refused unless ``overwrite``; with it the
      run may replace the files listed there, and `finish` removes those it did not write again.
    - Any other file in the folder is the user's: writing a file of that name is refused
      (naming it); other names are fine, so a run may add files to a folder of the user's.
    - Inputs (``inputs``) can never be written, whatever the folder.

    Every file goes through `atomic_path`; the manifest is rewritten (atomically) after each file,
    so a killed run still leaves a manifest naming everything it wrote.
    """

    def __init__(self, folder: "os.PathLike[str] | str", overwrite: bool = False, option: str = "--out",
                 names: Sequence[str] = (), inputs: Iterable[Optional[str]] = ()) -> None:
        self.folder = os.path.abspath(os.fspath(folder))
        self.option = option
        self.overwrite = overwrite
        self.inputs = [os.fspath(p) for p in inputs if p]
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise UnsafeOutputError(f"{option} {folder} is a file; give a folder.")
        for given in self.inputs:
            if os.path.isdir(given) and same_file(self.folder, given):
                raise UnsafeOutputError(f"{option} {folder} is an input folder; write the results to a new folder.")
        check_folder_writable(self.folder, option)
        self.earlier: List[str] = self._read_manifest()
        if self.earlier and not overwrite:
            raise UnsafeOutputError(f"{option} {folder} already holds the outputs of an earlier run "
                                    f"(e.g. {self.earlier[0]}); choose a new folder or add --overwrite.")
        self.written: List[str] = []
        for name in names:
            self._check_name(name)

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.folder, MANIFEST)

    def path(self, name: str) -> str:
        """The full path of the output ``name`` (checked: not the user's file, not an input)."""
        self._check_name(name)
        return os.path.join(self.folder, *name.split("/"))

    def _read_manifest(self) -> List[str]:
        try:
            with open(self.manifest_path, encoding="utf-8") as handle:
                document = json.load(handle)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as error:
            raise UnsafeOutputError(f"{self.option} {self.folder}: its list of earlier outputs ({MANIFEST}) cannot "
                                    f"be read ({error}); choose a new folder.") from None
        files = document.get("files", []) if isinstance(document, dict) else []
        return [str(name) for name in files if _is_relative_name(str(name))]

    def _check_name(self, name: str) -> None:
        if not _is_relative_name(name) or name == MANIFEST:
            raise ValueError(f"Not an output name inside a folder: {name!r}.")
        target = os.path.join(self.folder, *name.split("/"))
        for given in self.inputs:
            if same_file(target, given):
                raise UnsafeOutputError(f"{self.option} {self.folder}: writing {name} would replace the input "
                                        f"{given}; write the results to a new folder.")
        ours = name in self.earlier or name in self.written
        if os.path.lexists(target) and not ours:
            raise UnsafeOutputError(f"{self.option} {self.folder} already holds {name}, which this tool did not "
                                    "write; choose a new folder (your files are never replaced).")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[str]:
        """A temporary path for the file ``name``; it replaces the target when the block ends."""
        target = self.path(name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with atomic_path(target) as temporary:
            yield temporary
        if name not in self.written:
            self.written.append(name)
        self._write_manifest()

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
        with self.open(name) as handle:
            handle.write(text)

    def write_json(self, name: str, document: object, indent: Optional[int] = 2) -> None:
        self.write_text(name, json.dumps(document, indent=indent, allow_nan=False) + "\n")

    def _write_manifest(self) -> None:
        names = sorted(set(self.earlier) | set(self.written))
        write_json(self.manifest_path, {"tool": "ibisagent", "files": names})

    def finish(self) -> List[str]:
        """End the run: files an earlier run wrote here that this one did not write again are
        removed (they are ours and stale); the manifest lists exactly this run's files. Returns
        the names removed."""
        stale = [name for name in self.earlier if name not in self.written]
        removed = []
        for name in stale:
            target = os.path.join(self.folder, *name.split("/"))
            try:
                if os.path.isfile(target) and not os.path.islink(target):
                    os.remove(target)
                    removed.append(name)
            except OSError as error:
                if error.errno != errno.ENOENT:
                    raise
        self.earlier = []
        self._write_manifest()
        return removed


def _is_relative_name(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and not os.path.isabs(name) and "\\" not in name and all(p not in ("", ".", "..") for p in parts)
