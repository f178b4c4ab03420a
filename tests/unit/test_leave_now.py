"""`exits.leave_now`: a run's process ends without the interpreter's teardown, and loses
nothing by it: the exit code, what it printed (to a pipe too), its exit handlers' work, and
a thread of its own still working."""

import subprocess
import sys
from pathlib import Path


def run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )


def test_it_keeps_the_exit_code_the_output_and_the_exit_handlers(tmp_path: Path) -> None:
    code = """
import atexit, logging, sys
from routera_archive_pipelines.exits import leave_now
handler = logging.FileHandler("log.txt")
logging.getLogger().addHandler(handler)
atexit.register(lambda: open("atexit.txt", "w").write("ran"))
print("x" * 100_000)
sys.stderr.write("to stderr")
logging.getLogger().warning("logged")
leave_now(3)
"""
    done = run(code, tmp_path)
    assert done.returncode == 3
    assert done.stdout == "x" * 100_000 + "\n" and done.stderr == "to stderr"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "log.txt").read_text() == "logged\n"


def test_it_waits_for_a_thread_still_working(tmp_path: Path) -> None:
    code = """
import threading, time
from routera_archive_pipelines.exits import leave_now
def work():
    time.sleep(0.5)
    open("done.txt", "w").write("done")
threading.Thread(target=work).start()
leave_now(1)
"""
    done = run(code, tmp_path)
    assert done.returncode == 1
    assert (tmp_path / "done.txt").read_text() == "done"
