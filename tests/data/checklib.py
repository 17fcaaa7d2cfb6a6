"""Shared by the Python tests in tests/data: a failure counter that reports
every failed check (a test never stops at the first one) and the exit code."""
import sys

_fails = 0


def check(cond, what):
    """Records a failure (and prints what) when cond is false; returns cond."""
    global _fails
    if not cond:
        _fails += 1
        print(f"FAIL: {what}", file=sys.stderr)
    return cond


def finish(name):
    """Prints the verdict and exits 1 if any check failed."""
    print(f"{name}: " + ("FAILED" if _fails else "ok"))
    sys.exit(1 if _fails else 0)
