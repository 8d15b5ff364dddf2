"""Writing the proxy config, as root and as a deploy user who owns only the file."""

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference_service.deploy.proxy import write


@pytest.fixture
def conf_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parent is private to root, and the test runs as nobody.
    path = Path(tempfile.mkdtemp(prefix="proxy-conf-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_write_replaces_the_file(conf_dir: Path) -> None:
    conf = conf_dir / "inference-service.conf"
    write(conf, "first\n")
    write(conf, "second\n")
    assert conf.read_text() == "second\n"
    assert [p.name for p in conf_dir.iterdir()] == [conf.name]  # no temporary file left


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_owner_of_the_file_but_not_the_directory_rewrites_in_place(conf_dir: Path) -> None:
    """The VM's layout: the deploy user owns the config file, root owns nginx's conf.d."""
    conf = conf_dir / "inference-service.conf"
    conf.write_text("a much longer placeholder than the new config\n")
    os.chown(conf, 65534, 65534)  # nobody
    inode = conf.stat().st_ino
    code = (
        "from pathlib import Path\n"
        "from inference_service.deploy.proxy import write\n"
        f"write(Path({str(conf)!r}), 'upstream\\n')\n"
    )
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert conf.read_text() == "upstream\n"
    assert conf.stat().st_ino == inode
