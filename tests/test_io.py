"""tfdml.io: crash-safe writes. A reader sees the old content or the new, never a half-written one;
a writer killed anywhere (simulated in a child process that exits where a ``kill -9`` would stop it)
leaves the old or the new folder, and the next write or :func:`tfdml.io.recover_directory` cleans up."""

import os
import stat
import subprocess
import sys

import pytest

import paths
from tfdml import io as tio


def write_files(files):
    """A ``write_fn`` that writes ``{name: text}`` into the folder it is given."""

    def write(folder):
        for name, text in files.items():
            with open(os.path.join(folder, name), "w") as f:
                f.write(text)

    return write


def contents(folder):
    return {name: open(os.path.join(folder, name)).read() for name in sorted(os.listdir(folder))}


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------- files


def test_write_file_atomically_writes_text_and_bytes_world_readable(tmp_path):
    path = tmp_path / "new" / "config.yaml"
    assert tio.write_file_atomically(str(path), "seed: 0\n") == str(path)
    assert path.read_text() == "seed: 0\n" and mode(path) == tio.FILE_MODE
    tio.write_file_atomically(str(path), b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(path.parent)) == ["config.yaml"]


def test_save_file_atomically_keeps_the_old_file_when_the_saver_fails(tmp_path):
    path = tmp_path / "final.weights.h5"
    path.write_text("old")
    suffixes = []

    def failing(tmp):
        suffixes.append(tmp)
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        tio.save_file_atomically(str(path), failing)
    assert path.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["final.weights.h5"]
    assert suffixes[0].endswith(".weights.h5")  # savers that check the extension accept the temporary name


# ---------------------------------------------------------------- folders


def test_write_directory_atomically_refuses_to_overwrite_unless_asked(tmp_path):
    target = tmp_path / "models" / "1"
    tio.write_directory_atomically(str(target), write_files({"saved_model.pb": "v1"}))
    assert contents(target) == {"saved_model.pb": "v1"}
    assert mode(target) == tio.DIRECTORY_MODE and mode(target / "saved_model.pb") == tio.FILE_MODE
    with pytest.raises(FileExistsError, match="already exists"):
        tio.write_directory_atomically(str(target), write_files({"saved_model.pb": "v2"}))
    tio.write_directory_atomically(str(target), write_files({"saved_model.pb": "v2"}), overwrite=True)
    assert contents(target) == {"saved_model.pb": "v2"}
    assert sorted(os.listdir(target.parent)) == ["1"]


def test_a_folder_with_files_tfdml_did_not_write_is_never_replaced(tmp_path):
    target = tmp_path / "index"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"did not write \(notes.txt\)"):
        tio.write_directory_atomically(str(target), write_files({"a": "x"}), overwrite=True, owned={"a"})
    assert contents(target) == {"notes.txt": "mine"}
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        tio.check_replaceable(str(tmp_path / "file"), None)
    tio.check_replaceable(str(target), {"notes.txt"})  # owned: replaceable


def test_a_failing_write_fn_leaves_nothing_behind(tmp_path):
    def failing(folder):
        write_files({"a": "x"})(folder)
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        tio.write_directory_atomically(str(tmp_path / "out"), failing)
    assert os.listdir(tmp_path) == []


def test_make_readable_sets_the_modes_of_everything_below(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    os.chmod(tmp_path / "a" / "b" / "f", 0o600)
    os.chmod(tmp_path / "a" / "b", 0o700)
    tio.make_readable(str(tmp_path / "a"))
    assert mode(tmp_path / "a" / "b") == tio.DIRECTORY_MODE and mode(tmp_path / "a" / "b" / "f") == tio.FILE_MODE


def test_unwritable_reason_names_the_nearest_existing_ancestor(tmp_path, monkeypatch):
    assert tio.unwritable_reason(str(tmp_path / "not" / "yet")) is None
    (tmp_path / "file").write_text("x")
    assert tio.unwritable_reason(str(tmp_path / "file" / "run")) == f"{tmp_path / 'file'} is not a folder"
    locked = tmp_path / "locked"
    locked.mkdir()
    # os.access, not a chmod: root may write anywhere.
    monkeypatch.setattr(os, "access", lambda path, flags: os.path.abspath(path) != str(locked))
    assert tio.unwritable_reason(str(locked / "run" / "x")) == f"the folder {locked} is not writable"
    assert os.listdir(locked) == []  # nothing written to find out


# ---------------------------------------------------------------- D2/D30: a writer killed half-way

CHILD = r"""
import os, shutil, sys
import tfdml.io as tio
source, target, point = sys.argv[1:]
real_rename, real_exchange = os.rename, getattr(tio, "_exchange", None)

def die():
    os._exit(137)  # what a kill -9 does at this point: no except/finally runs

if point == "between-renames":  # the two-rename replace of filesystems without an atomic exchange
    tio._exchange = lambda a, b: False
    def rename(a, b):
        real_rename(a, b)
        if os.path.basename(b) == "previous":
            die()
    os.rename = rename
elif point == "after-exchange":
    def exchange(a, b):
        real_exchange(a, b)
        die()
    tio._exchange = exchange

def write(tmp):
    for name in os.listdir(source):
        shutil.copy(os.path.join(source, name), tmp)
    if point == "while-writing":
        die()

tio.write_directory_atomically(target, write, overwrite=True)
"""


def killed_writer(source, target, point):
    """Run ``write_directory_atomically(target, <copy of source>)`` in a process that dies at ``point``."""
    env = {**os.environ, "PYTHONPATH": str(paths.REPO)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(source), str(target), point], env=env, capture_output=True)
    assert done.returncode == 137, done.stderr.decode()[-2000:]


@pytest.mark.parametrize(
    "point, survivor",
    [("between-renames", "old"), ("after-exchange", "new"), ("while-writing", "old")],
)
def test_d2_a_replace_killed_anywhere_leaves_the_old_or_new_folder_and_no_leftovers(point, survivor, tmp_path):
    folder = tmp_path / "indexes"
    tio.write_directory_atomically(str(folder / "idx"), write_files({"ids": "1 2 3 4"}))
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "ids").write_text("7 8 9")
    killed_writer(tmp_path / "new", folder / "idx", point)
    if point != "between-renames":  # with an atomic exchange the path is never empty, not even for a moment
        assert (folder / "idx" / "ids").exists()
    tio.recover_directory(str(folder / "idx"))  # what GalleryIndex.load does first
    assert contents(folder / "idx") == {"ids": "1 2 3 4" if survivor == "old" else "7 8 9"}
    assert sorted(os.listdir(folder)) == ["idx"]
    killed_writer(tmp_path / "new", folder / "idx", point)
    tio.write_directory_atomically(str(folder / "idx"), write_files({"ids": "5"}), overwrite=True)  # recovers too
    assert sorted(os.listdir(folder)) == ["idx"] and contents(folder / "idx") == {"ids": "5"}


def test_d2_a_failed_second_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "d"
    tio.write_directory_atomically(str(target), lambda tmp: open(os.path.join(tmp, "a"), "w").write("old"))
    monkeypatch.setattr(tio, "_exchange", lambda a, b: False)
    real_rename = os.rename

    def rename(a, b):
        if os.path.basename(a).startswith(".tmp-"):
            raise OSError("disk gone")
        real_rename(a, b)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="disk gone"):
        tio.write_directory_atomically(str(target), lambda tmp: open(f"{tmp}/a", "w").write("new"), overwrite=True)
    assert (target / "a").read_text() == "old" and sorted(os.listdir(tmp_path)) == ["d"]


def dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_d30_a_later_write_cleans_a_dead_writers_temp_folder_but_never_a_live_ones(tmp_path, monkeypatch):
    source = tmp_path / "src"
    source.mkdir()
    (source / "saved_model.pb").write_text("x")
    model_dir = tmp_path / "models" / "m"
    killed_writer(source, model_dir / "1", "while-writing")
    assert [name for name in os.listdir(model_dir) if name.startswith(".tmp-1-")]
    live = model_dir / (tio._temp_prefix("tmp", "1", os.getpid()) + "live")  # a writer in this very process
    live.mkdir()
    with monkeypatch.context() as patch:  # pids of another machine sharing the folder mean nothing here
        patch.setattr(tio, "_HOST", "elsewhere")
        other_host = model_dir / (tio._temp_prefix("tmp", "1", dead_pid()) + "abc")
    other_host.mkdir()
    tio.write_directory_atomically(str(model_dir / "1"), write_files({"saved_model.pb": "y"}))
    assert sorted(os.listdir(model_dir)) == sorted(["1", live.name, other_host.name])
