"""Crash-safe writes: every file and directory tfdml writes goes through here.

A reader (TF Serving polling ``models/<name>/``, a resumed run reading its backup,
``GalleryIndex.load``) sees either the old content or the new, never a half-written
one, because content is written beside its target and renamed over it. Written
directories are readable by other users (``0o755`` folders, ``0o644`` files), so a
TF Serving process running as another user can load an export.

Replacing a directory never deletes files that tfdml did not write: the caller names
the entries it owns, and a target holding anything else is refused. A replaced directory
is swapped in atomically (Linux ``renameat2(RENAME_EXCHANGE)``), so its path is never
missing; where the filesystem cannot swap (NFS, macOS), a writer killed between the two
renames leaves the old version beside the path, and the next write or
:func:`recover_directory` (``GalleryIndex.load``) puts it back. Temporary folders carry
their writer's host and pid: a later write removes those of dead writers, never a live one's.

Example:

>>> write_file_atomically("runs/x/config.yaml", "seed: 0\\n")
>>> save_file_atomically("runs/x/final.weights.h5", lambda tmp: model.save_weights(tmp))
>>> write_directory_atomically("models/m/1", lambda tmp: save_model_to(tmp), owned={"saved_model.pb"})
"""

import ctypes
import errno
import os
import re
import shutil
import socket
import sys
import tempfile
import zlib

DIRECTORY_MODE = 0o755
FILE_MODE = 0o644
# Temporary folders are named .tmp-<target>-<host>-<pid>-<random> (and .old-… for a replaced
# version): the host, hashed to a short token, keeps writers on other machines of a shared
# filesystem out of reach, since their pids mean nothing here.
_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"


def unwritable_reason(folder):
    """Why this process cannot create or write ``folder``, or ``None``: its nearest existing ancestor
    (``folder`` itself when it exists) must be a writable folder. Checked with ``os.access``, so
    nothing is written."""
    existing = os.path.abspath(folder)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"the folder {existing} is not writable"
    return None


def write_file_atomically(path, content):
    """Write ``content`` (str or bytes) to ``path`` through a fsynced temporary file and a rename."""

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)

    return save_file_atomically(path, write)


def save_file_atomically(path, save_fn):
    """Run ``save_fn(tmp)`` to write a temporary file beside ``path``, then fsync it and rename it over
    ``path``. The temporary name ends like ``path`` (e.g. ``.weights.h5``) for savers that check it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{os.path.basename(path)}", dir=directory)
    os.close(handle)
    try:
        save_fn(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def link_file_atomically(source, path):
    """Make ``path`` a hard link to ``source`` (a copy where the filesystem has no hard links), through a
    temporary name and a rename: ``path`` is never half written, and writing ``source`` again later (through
    :func:`save_file_atomically`, a new file) leaves ``path`` as it was."""

    def link(tmp):
        os.remove(tmp)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    return save_file_atomically(path, link)


def write_directory_atomically(directory, write_fn, *, overwrite=False, owned=None):
    """Run ``write_fn(tmp_dir)`` and rename ``tmp_dir`` to ``directory`` (same filesystem).

    Args:
        directory: the target folder.
        write_fn: fills the temporary folder it is given.
        overwrite: replace an existing ``directory``; otherwise ``FileExistsError``.
        owned: names of the top-level entries the writer owns. With ``overwrite``, an
            existing ``directory`` holding any other entry is refused (``FileExistsError``
            naming it) instead of being replaced, so nothing a user put there is lost.
            ``None`` allows replacing whatever is there.

    The temporary folder is removed if ``write_fn`` fails; nothing is left behind. What a
    killed writer left beside ``directory`` is recovered first (:func:`recover_directory`).
    """
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    recover_directory(directory)
    if os.path.exists(directory):
        if not overwrite:
            raise FileExistsError(f"{directory} already exists; choose another target or pass overwrite=True.")
        check_replaceable(directory, owned)
    tmp = tempfile.mkdtemp(prefix=_temp_prefix("tmp", os.path.basename(directory)), dir=parent)
    try:
        write_fn(tmp)
        make_readable(tmp)
        if not os.path.exists(directory):
            os.rename(tmp, directory)
        elif not _exchange(tmp, directory):
            _replace_in_two_renames(tmp, directory)
    finally:  # after an exchange, tmp holds the previous version
        _remove(tmp)
    return directory


def recover_directory(directory):
    """Put back or remove what writers killed inside :func:`write_directory_atomically` left beside
    ``directory``: a replaced version whose successor never arrived is renamed back to the
    (missing) path; temporary folders are removed. Only dead writers' folders on this host are touched.
    """
    parent, name = os.path.split(os.path.abspath(directory))
    if not os.path.isdir(parent):
        return
    pattern = re.compile(rf"\.(tmp|old)-{re.escape(name)}-{_HOST}-(\d+)-[a-z0-9_]+")
    for entry in sorted(os.listdir(parent)):
        match = pattern.fullmatch(entry)
        if not match or _alive(int(match[2])):
            continue
        previous = os.path.join(parent, entry, "previous")
        if match[1] == "old" and os.path.lexists(previous) and not os.path.lexists(directory):
            try:
                os.rename(previous, directory)
            except OSError:
                if not os.path.lexists(directory):  # not put back by a concurrent recovery either
                    raise
        _remove(os.path.join(parent, entry))


def _remove(path):
    """Remove a temporary folder, or the symlink an exchange swapped into its place."""
    if os.path.islink(path):
        os.remove(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _temp_prefix(kind, name, pid=None):
    return f".{kind}-{name}-{_HOST}-{os.getpid() if pid is None else pid}-"


def _alive(pid):
    """Whether process ``pid`` (on this host) may still be running; always true off POSIX, where it cannot be asked."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _exchange(a, b):
    """Swap the paths ``a`` and ``b`` in one atomic step; ``False`` where the OS or filesystem cannot."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc >= 2.28
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(error, os.strerror(error), b)


def _replace_in_two_renames(tmp, directory):
    """Move ``directory`` aside, then ``tmp`` in; the old version comes back if the second rename fails."""
    old = tempfile.mkdtemp(prefix=_temp_prefix("old", os.path.basename(directory)), dir=os.path.dirname(tmp))
    previous = os.path.join(old, "previous")
    try:
        os.rename(directory, previous)
        try:
            os.rename(tmp, directory)
        except BaseException:
            os.rename(previous, directory)
            raise
    finally:
        if os.path.lexists(directory):  # else old/previous is the only copy left, for recover_directory
            shutil.rmtree(old, ignore_errors=True)


def check_replaceable(directory, owned):
    """Raise ``FileExistsError`` if ``directory`` is not a folder or holds entries outside ``owned``."""
    if not os.path.isdir(directory):
        raise FileExistsError(f"{directory} exists and is not a directory; refusing to replace it.")
    if owned is None:
        return
    foreign = sorted(set(os.listdir(directory)) - set(owned))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(
            f"{directory} holds files tfdml did not write ({shown}); refusing to replace it. "
            "Choose an empty or new folder."
        )


def make_readable(directory):
    """Give ``directory`` and everything under it world-readable modes (``0o755`` folders, ``0o644`` files)."""
    os.chmod(directory, DIRECTORY_MODE)
    for root, folders, files in os.walk(directory):
        for name in folders:
            os.chmod(os.path.join(root, name), DIRECTORY_MODE)
        for name in files:
            os.chmod(os.path.join(root, name), FILE_MODE)
