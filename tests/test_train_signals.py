"""`dpqtb train` runs `dp` as a child: SIGTERM to dpqtb (``kill PID``, a batch system's limit) must
stop that child too, not leave it training on as an orphan."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# a stand-in for `dp`: writes its pid and sleeps; the parent runs dpqtb's _run_dp on it
_FAKE_DP = """import os, sys, time
open(sys.argv[-1] + ".pid", "w").write(str(os.getpid()))
time.sleep(120)
"""

_PARENT = """import sys
from pathlib import Path
import dpqtb.train.runner as r
fake, work = sys.argv[1], Path(sys.argv[2])
r.dp_executable = lambda: fake
print("start", flush=True)
try:
    r._run_dp(["--pt", "train", str(work / "child")], work, work / "dp.log", None, "model_0")
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
sys.exit(0)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_sigterm_stops_the_dp_child(tmp_path):
    fake = tmp_path / "dp"
    fake.write_text(f"#!{sys.executable}\n" + _FAKE_DP)
    fake.chmod(0o755)
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(fake), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "start"
        pidfile = tmp_path / "child.pid"
        for _ in range(300):
            if pidfile.exists() and pidfile.read_text():
                break
            time.sleep(0.1)
        child = int(pidfile.read_text())
        assert _alive(child)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 130  # dpqtb saw an interruption ...
        assert parent.stdout.read().strip() == "interrupted"
        for _ in range(100):
            if not _alive(child):
                break
            time.sleep(0.1)
        assert not _alive(child)  # ... and the dp child is gone
    finally:
        parent.kill()
        parent.wait()
