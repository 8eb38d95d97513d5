"""Prints the parity report (configurations per reference, largest scaled error per
precision) at the end of every session that ran parity tests."""

from . import _harness as h


def pytest_terminal_summary(terminalreporter):
    if not h.REPORT:
        return
    tr = terminalreporter
    tr.section("parity: largest scaled error max|ours - theirs| / max|theirs| over steps")
    for ref in sorted(h.REPORT):
        e = h.REPORT[ref]
        errs = ", ".join(f"{p} {v:.2e}" for p, v in sorted(e["max_err"].items()))
        n, cases = len(e["configs"]), e["cases"]
        tr.write_line(f"{ref}: {n} configurations, {cases} comparisons; {errs}")
