"""Crash-safe writes: every file and directory tfdml writes goes through here.

A reader (TF Serving polling ``models/<name>/``, a resumed run reading its backup,
``GalleryIndex.load``) sees either the old content or the new, never a half-written
one, because content is written beside its target and renamed over it. Written
directories are readable by other users (``0o755`` folders, ``0o644`` files), so a
TF Serving process running as another user can load an export.

Replacing a directory never deletes files that tfdml did not write: the caller names
the entries it owns, and a target holding anything else is refused.

Example:

>>> write_file_atomically("runs/x/config.yaml", "seed: 0\\n")
>>> save_file_atomically("runs/x/final.weights.h5", lambda tmp: model.save_weights(tmp))
>>> write_directory_atomically("models/m/1", lambda tmp: save_model_to(tmp), owned={"saved_model.pb"})
"""

import os
import shutil
import tempfile

DIRECTORY_MODE = 0o755
FILE_MODE = 0o644


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

    The temporary folder is removed if ``write_fn`` fails; nothing is left behind.
    """
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(directory):
        if not overwrite:
            raise FileExistsError(f"{directory} already exists; choose another target or pass overwrite=True.")
        check_replaceable(directory, owned)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(directory)}-", dir=parent)
    try:
        write_fn(tmp)
        make_readable(tmp)
        if os.path.exists(directory):
            old = tempfile.mkdtemp(prefix=f".old-{os.path.basename(directory)}-", dir=parent)
            try:
                os.rename(directory, os.path.join(old, "previous"))
                os.rename(tmp, directory)
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


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
