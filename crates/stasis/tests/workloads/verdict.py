"""The verdict of a Python workload (imported from the workload's own directory): PASS,
or one "FAIL: ..." line per failed check, on stdout or in WORKDIR/result (so that stdout
does not change after the dump: a --leave-running original runs on); exit 0 or 1."""
import os
import sys


def finish(work, to_file, fails):
    lines = ["FAIL: %s" % f for f in fails] or ["PASS"]
    if to_file:
        with open(os.path.join(work, "result"), "w") as f:
            f.write("\n".join(lines) + "\n")
    else:
        print("\n".join(lines), flush=True)
    sys.exit(1 if fails else 0)
