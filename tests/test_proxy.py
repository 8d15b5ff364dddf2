"""Writing the proxy config, as root and as a deploy user who owns only the file."""

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inference_service.deploy.proxy import write

NOBODY = 65534


@pytest.fixture
def conf_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parent is private to root, and the test runs as nobody.
    path = Path(tempfile.mkdtemp(prefix="proxy-conf-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def run_as(uid: int, action: Callable[[], None]) -> str:
    """Run `action` in a forked child that has dropped to `uid`; returns its error, or "".

    A fork, not a new interpreter: the child already holds every module it needs, so it works
    wherever the checkout lives, even in a directory that `uid` cannot enter, while the file
    system still checks every access against `uid`.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_end)
        code = 0
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            action()
        except BaseException as exc:  # everything goes back to the parent
            os.write(write_end, f"{type(exc).__name__}: {exc}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        error = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == (1 if error else 0)
    return error


def test_write_replaces_the_file(conf_dir: Path) -> None:
    conf = conf_dir / "inference-service.conf"
    write(conf, "first\n")
    write(conf, "second\n")
    assert conf.read_text() == "second\n"
    assert [p.name for p in conf_dir.iterdir()] == [conf.name]  # no temporary file left


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_owner_of_the_file_but_not_the_directory_rewrites_in_place(conf_dir: Path) -> None:
    """The VM's layout: the deploy user owns the config file, root owns nginx's conf.d."""
    conf = conf_dir / "inference-service.conf"
    conf.write_text("a much longer placeholder than the new config\n")
    os.chown(conf, NOBODY, NOBODY)
    inode = conf.stat().st_ino
    assert run_as(NOBODY, lambda: write(conf, "upstream\n")) == ""
    assert conf.read_text() == "upstream\n"
    assert conf.stat().st_ino == inode


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_user_owning_neither_file_nor_directory_is_refused(conf_dir: Path) -> None:
    """The child really runs as that user: without the file it cannot write at all."""
    conf = conf_dir / "inference-service.conf"
    conf.write_text("root's\n")
    error = run_as(NOBODY, lambda: write(conf, "upstream\n"))
    assert error.startswith("PermissionError"), error
    assert conf.read_text() == "root's\n"
