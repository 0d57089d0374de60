"""A folder nobody may write to, for the tests of "an unwritable output is found before the work".

For an ordinary user a folder without write permission is enough. Root may write into any
folder of a writable file system (``os.access`` rightly says so), so for root the folder is a
real read-only file system: a small tmpfs mounted read-only. Where that cannot be done (no
permission to mount, no tmpfs) the test is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from typing import Iterator

import pytest


@contextlib.contextmanager
def read_only_folder(parent) -> Iterator[str]:
    folder = os.path.join(str(parent), "read-only")
    os.makedirs(folder)
    if os.geteuid() != 0:
        os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
        try:
            yield folder
        finally:
            os.chmod(folder, stat.S_IRWXU)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", folder], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("running as root, where every folder is writable, and a read-only tmpfs cannot be mounted "
                    f"here ({done.stderr.strip() or done.returncode})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", folder], check=False)


@contextlib.contextmanager
def full_folder(parent) -> Iterator[str]:
    """A folder on a tiny file system that is already full (writing into it fails with ENOSPC);
    needs root to mount it, else the test is skipped."""
    folder = os.path.join(str(parent), "full")
    os.makedirs(folder)
    if os.geteuid() != 0:
        pytest.skip("a full file system needs a tmpfs mount, which only root may make here")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", folder], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"a small tmpfs cannot be mounted here ({done.stderr.strip() or done.returncode})")
    try:
        descriptor = os.open(os.path.join(folder, "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            with contextlib.suppress(OSError):
                while os.write(descriptor, b"\0" * 1024):
                    pass
        finally:
            os.close(descriptor)
        yield folder
    finally:
        subprocess.run(["umount", folder], check=False)
