"""diffclosure.progress.progress: the bar goes to stderr (stdout stays clean), is throttled to
one redraw per 5 s when stderr is not a terminal, passes items through unchanged, and is silent
when disabled."""

import io
import sys

from diffclosure import progress as progress_mod
from diffclosure.progress import progress


def test_iterates_unchanged_and_writes_only_to_stderr(capsys):
    items = list(range(7))
    assert list(progress(items, desc="things", unit="thing")) == items
    out, err = capsys.readouterr()
    assert out == ""
    assert "things" in err and "7/7" in err


def test_manual_bar_counts_updates(capsys):
    bar = progress(total=5, desc="manual", unit="step")
    for _ in range(5):
        bar.update()
    assert bar.n == 5
    bar.close()
    assert "5/5" in capsys.readouterr().err


def test_throttled_when_not_a_terminal_fast_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = progress(total=1)
    assert bar.mininterval == progress_mod.LOG_INTERVAL_S == 5.0
    bar.close()
    monkeypatch.setattr(sys, "stderr", Tty())
    bar = progress(total=1)
    assert bar.mininterval == progress_mod.TTY_INTERVAL_S == 0.5
    bar.close()
    bar = progress(total=1, mininterval=0.1)  # a caller may override
    assert bar.mininterval == 0.1
    bar.close()


def test_disabled_bar_is_silent(capsys):
    assert list(progress(range(3), desc="quiet", enabled=False)) == [0, 1, 2]
    bar = progress(total=3, desc="quiet", enabled=False)
    bar.update()
    bar.close()
    out, err = capsys.readouterr()
    assert out == "" and err == ""
