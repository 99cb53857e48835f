"""The README's two set-up commands work as written, run in the root of a scratch checkout.

A scratch copy of the checkout gets a fresh virtual environment; the README's commands
(read out of it by ``tools/readme_commands.py``, as ``.ci/run`` does) run there with a
shell, from the copy's root, exactly as written.  The test command's run is narrowed by
``PYTEST_ADDOPTS`` to two tests (the README's Python blocks and the import-location
check below), so that it does not recurse into itself; ``.ci/run`` runs it in full.

Skipped where the tests do not sit in a source checkout (a wheel's test run copies
``tests/`` alone), or with ``FASTNN_SKIP_SCRATCH_INSTALL=1`` (it needs PyPI and about
two minutes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CHECKOUT = (ROOT / "pyproject.toml").exists() and (ROOT / "tools/readme_commands.py").exists()


def _copy_checkout(dest: Path) -> None:
    """Copy the checkout's files (tracked and untracked-but-not-ignored when in git)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], capture_output=True, check=True).stdout
        files = [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if not files:  # not a git checkout: everything but build products
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.so", "*.egg-info", "__pycache__", ".venv", "venv"))
        return
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


@pytest.mark.skipif(not IN_CHECKOUT, reason="tests/ is not inside a source checkout")
@pytest.mark.skipif(bool(os.environ.get("FASTNN_SKIP_SCRATCH_INSTALL")),
                    reason="FASTNN_SKIP_SCRATCH_INSTALL is set")
@pytest.mark.skipif(bool(os.environ.get("FASTNN_IN_SCRATCH_CHECKOUT")),
                    reason="already inside the scratch checkout")
def test_readme_commands_in_a_scratch_checkout(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from readme_commands import readme_commands
    finally:
        sys.path.pop(0)
    setup_cmd, test_cmd = readme_commands(ROOT / "README.md")
    checkout = tmp_path / "checkout"
    _copy_checkout(checkout)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS", "PYTHONHOME")}
    env.update(PATH=str(bindir) + os.pathsep + env.get("PATH", ""), VIRTUAL_ENV=str(venv),
               PIP_DISABLE_PIP_VERSION_CHECK="1", FASTNN_IN_SCRATCH_CHECKOUT="1",
               FASTNN_EXPECT_PREFIX=str(venv.resolve()))

    def run(cmd: str, **extra: str) -> str:
        proc = subprocess.run(["bash", "-c", cmd], cwd=checkout, env=dict(env, **extra),
                              capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, (f"`{cmd}` failed ({proc.returncode}) in the checkout "
                                      f"root:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout

    out = run(setup_cmd)
    assert "test accuracy:" in out, out[-2000:]
    out = run(test_cmd, PYTEST_ADDOPTS="-p no:cacheprovider -k "
              "'test_readme_python_blocks_run or test_fastnn_imported_from_the_environment'")
    assert "2 passed" in out, out[-2000:]


def test_fastnn_imported_from_the_environment():
    """Inside the scratch run: fastnn comes from the fresh venv, never from the checkout."""
    prefix = os.environ.get("FASTNN_EXPECT_PREFIX")
    if not prefix:
        pytest.skip("only meaningful inside the scratch checkout's run")
    import fastnn

    where = Path(fastnn.__file__).resolve()
    assert str(where).startswith(prefix + os.sep), f"fastnn imported from {where}, not {prefix}"
