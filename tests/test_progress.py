"""progress: plain periodic lines when stderr is not a terminal, a tqdm bar when it is, Ctrl-C lines."""
import io
import re

import pytest
from tqdm import tqdm

from lpcache.progress import LogProgress, format_duration, handle_interrupt, interrupted_message, progress_bar


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_non_terminal_stderr_gets_plain_lines(capsys):
    with progress_bar(total=50, desc="propagate t0.7_k8_r18_L20", unit="frame") as bar:
        bar.set_postfix_str("car-shadow")
        for _ in range(50):
            bar.update(1)
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    # one line per 10 % step; the last is the final summary (printed once, not again by __exit__)
    assert len(lines) == 10 and all(line.endswith(" [car-shadow]") for line in lines)
    assert lines[0].startswith("propagate t0.7_k8_r18_L20: 5/50 frames (10%), ")
    assert re.search(r", [0-9.]+ frames/s, ETA \d+s \[car-shadow\]$", lines[0]), lines[0]
    assert lines[-1].startswith("propagate t0.7_k8_r18_L20: 50/50 frames (100%), ")
    assert ", took " in lines[-1] and "ETA" not in lines[-1]


def test_rate_and_eta_count_only_this_process_work():
    clock, out = FakeClock(), io.StringIO()
    bar = LogProgress(400, "propagate t0.7_k8_r18_L20", "frame", initial=100, stream=out, interval=10, clock=clock)
    clock.now += 10
    bar.update(20)           # 20 frames in 10 s: 2 frames/s; 280 left -> 140 s
    assert out.getvalue() == "propagate t0.7_k8_r18_L20: 120/400 frames (30%), 2 frames/s, ETA 2m20s\n"
    clock.now += 5
    bar.update(1)            # neither 10 s nor a 10 % step: silent
    assert out.getvalue().count("\n") == 1
    clock.now += 5.5
    bar.update(19)           # 140/400 = 35 %: no 10 % step crossed, but 10.5 s since the last line
    assert out.getvalue().count("\n") == 2
    last = out.getvalue().splitlines()[-1]
    # 40 frames in 20.5 s = 1.95 frames/s; 260 frames left -> 133.25 s
    assert last == "propagate t0.7_k8_r18_L20: 140/400 frames (35%), 1.95 frames/s, ETA 2m13s"


def test_no_total_and_no_rate_yet():
    clock, out = FakeClock(), io.StringIO()
    bar = LogProgress(None, "extract", "batch", stream=out, interval=1, clock=clock)
    assert bar.line() == "extract: 0 batches"
    clock.now += 2
    bar.update(3)
    bar.close()
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines == ["extract: 3 batches, 1.5 batches/s"]   # close printed nothing new: no change since


def test_interrupted_bar_prints_no_final_line():
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with LogProgress(100, "sweep", "frame", stream=out, interval=1e9) as bar:
            bar.update(3)
            raise KeyboardInterrupt
    assert out.getvalue() == ""


def test_terminal_gets_tqdm_and_disabled_is_silent(capsys):
    terminal = FakeTerminal()
    bar = progress_bar(total=10, desc="x", stream=terminal, initial=4)
    assert isinstance(bar, tqdm) and bar.n == 4
    bar.close()
    quiet = progress_bar(total=10, desc="x", enabled=False)
    quiet.update(5)
    quiet.set_postfix_str("y")
    quiet.close()
    assert capsys.readouterr().err == ""


def test_format_duration():
    assert [format_duration(s) for s in (0, 44.6, 60, 133, 3599, 3600, 7325)] == \
        ["0s", "45s", "1m00s", "2m13s", "59m59s", "1h00m", "2h02m"]


def test_interrupted_message_is_one_line():
    text = interrupted_message("12 of 20 sequences in\nruns/x", "re-run the same command to resume.")
    assert text == "Interrupted: kept 12 of 20 sequences in runs/x; re-run the same command to resume."


def test_handle_interrupt_prints_and_exits_130():
    out, counted = io.StringIO(), []
    with pytest.raises(SystemExit) as exit_info:
        with handle_interrupt(lambda: counted.append(1) or "3 shards in out/shards", stream=out):
            raise KeyboardInterrupt
    assert exit_info.value.code == 130 and counted == [1]
    assert out.getvalue() == "Interrupted: kept 3 shards in out/shards; re-run the same command to resume.\n"
    with handle_interrupt("nothing", stream=out):
        pass                                   # no interrupt: nothing printed
    assert out.getvalue().count("\n") == 1
