"""Long work shows progress in logs too: when stderr is not a terminal (a file, CI), the progress bar becomes
plain lines every few seconds or every 10 %, instead of nothing."""

from __future__ import annotations

import itertools
import re

from avat3r_cli.common import LOG_EVERY_S, Reporter


def _run(capsys, items, total=None, seconds_per_item=1.0, quiet=False):
    rep = Reporter(quiet=quiet)
    ticks = itertools.count()
    rep.clock = lambda: next(ticks) * seconds_per_item
    out = list(rep.track(items, "rendering", total=total))
    return out, capsys.readouterr().err.splitlines()


def test_log_lines_every_ten_percent(capsys):
    out, lines = _run(capsys, list(range(100)), seconds_per_item=0.01)
    assert out == list(range(100))
    assert [int(m.group(1)) for line in lines if (m := re.match(r"rendering: (\d+)/100 \(", line))] == \
        list(range(10, 100, 10))
    assert lines[-1].startswith("rendering: 100/100 done")
    assert not any("\x1b" in line for line in lines), "plain text for logs, no terminal escapes"


def test_log_lines_every_few_seconds_without_a_total(capsys):
    _, lines = _run(capsys, iter(range(60)), seconds_per_item=1.0)
    timed = [line for line in lines if re.match(r"rendering: \d+ done, \d+ s elapsed", line)]
    assert len(timed) == 60 // int(LOG_EVERY_S) - 1 or len(timed) == 60 // int(LOG_EVERY_S)
    assert lines[-1].startswith("rendering: 60 done")


def test_quiet_prints_nothing(capsys):
    _, lines = _run(capsys, list(range(20)), quiet=True)
    assert lines == []
