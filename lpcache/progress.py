"""Progress a person can read, on a terminal or in a log file.

    with progress_bar(total=400, desc="propagate t0.7_k8_r18_L20", unit="frame", initial=120) as bar:
        for ...:
            bar.update(1)
            bar.set_postfix_str("car-shadow")

On a terminal (stderr is a TTY) this is a tqdm bar. Otherwise (a log file, CI, `2> log.txt`) it writes plain
lines, without carriage returns or escape codes, every `interval` seconds or every 10 % of the total:

    propagate t0.7_k8_r18_L20: 160/400 frames (40%), 2.1 frames/s, ETA 1m54s [car-shadow]

`initial` is work already done before this process started (reused on resume): it counts towards the
position and the percentage but not towards the rate, so the ETA is that of the remaining work at this
process's speed. `enabled=False` gives a silent object with the same API (for --no-progress).

On Ctrl-C a command prints one line made by `interrupted_message` (or wraps its work in
`handle_interrupt`, which prints it and exits with status 130).
"""
import contextlib
import sys
import time

from tqdm import tqdm

#: Seconds between two plain progress lines (at most; a 10 % step also prints one).
LOG_INTERVAL = 10.0
#: A plain line is also printed each time the percentage crosses a multiple of this.
LOG_PERCENT_STEP = 10


def progress_bar(total, desc, unit="frame", enabled=True, initial=0, stream=None, interval=LOG_INTERVAL):
    """A tqdm bar when `stream` (default: sys.stderr) is a terminal, else a LogProgress; silent when disabled.

    Both have update(n), set_postfix_str(text), set_description(text), close(), n, total and work as
    context managers.
    """
    stream = sys.stderr if stream is None else stream
    if not enabled:
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=True)
    if _is_terminal(stream):
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=stream, dynamic_ncols=True)
    return LogProgress(total, desc, unit, initial=initial, stream=stream, interval=interval)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False


class LogProgress:
    """tqdm's update/set_postfix_str/close API, reported as periodic plain lines on a non-terminal stream."""

    def __init__(self, total, desc, unit="frame", initial=0, stream=None, interval=LOG_INTERVAL,
                 clock=time.monotonic):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.initial = initial
        self.stream = sys.stderr if stream is None else stream
        self.interval, self.clock = interval, clock
        self.postfix = ""
        self.start = self.last_time = clock()
        self.last_n = initial
        self.closed = False

    # ------------------------------------------------------------------ the tqdm API
    def update(self, n=1):
        """Advance by n; print a line when `interval` seconds passed or a 10 % step was crossed."""
        self.n += n
        now = self.clock()
        if self.total and self.n >= self.total:
            self.close()
        elif now - self.last_time >= self.interval or self._crossed_step():
            self._print(now)

    def set_postfix_str(self, text="", refresh=True):
        """Text shown in brackets at the end of the next line (e.g. the current video)."""
        self.postfix = str(text)

    def set_description(self, desc=None, refresh=True):
        """Replace the description (the text before the colon)."""
        self.desc = desc or ""

    def close(self):
        """Print the final line (unless nothing happened since the last line); idempotent. Called by update
        when the total is reached."""
        if not self.closed:
            self.closed = True
            if self.n != self.last_n:
                self._print(self.clock(), final=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.close()
        else:
            self.closed = True    # interrupted or failed: the caller reports what happened
        return False

    # ------------------------------------------------------------------ the lines
    def _crossed_step(self) -> bool:
        if not self.total:
            return False
        step = self.total * LOG_PERCENT_STEP / 100
        return int(self.n / step) > int(self.last_n / step)

    def rate(self, now=None):
        """Units per second over the work done by this process (work given as `initial` excluded)."""
        elapsed = (self.clock() if now is None else now) - self.start
        done = self.n - self.initial
        return done / elapsed if elapsed > 0 and done > 0 else None

    def line(self, now=None, final=False) -> str:
        """The text of one progress line."""
        now = self.clock() if now is None else now
        units = _plural(self.unit)
        parts = [f"{self.n}/{self.total} {units} ({100 * self.n / self.total:.0f}%)" if self.total
                 else f"{self.n} {units}"]
        rate = self.rate(now)
        if rate is not None:
            parts.append(f"{_number(rate)} {units}/s")
        if final:
            parts.append(f"took {format_duration(now - self.start)}")
        elif rate is not None and self.total:
            parts.append(f"ETA {format_duration(max(0, self.total - self.n) / rate)}")
        text = f"{self.desc}: {', '.join(parts)}" if self.desc else ", ".join(parts)
        return text + (f" [{self.postfix}]" if self.postfix else "")

    def _print(self, now, final=False):
        self.stream.write(self.line(now, final) + "\n")
        self.stream.flush()
        self.last_time, self.last_n = now, self.n


def _plural(unit) -> str:
    """'frame' -> 'frames', 'batch' -> 'batches'; a unit already ending in s is kept."""
    if not unit or unit.endswith("s"):
        return unit
    return unit + ("es" if unit.endswith(("ch", "sh", "x")) else "s")


def _number(value) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def format_duration(seconds) -> str:
    """Seconds as a short human duration: '45s', '2m13s', '1h02m'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# ---------------------------------------------------------------------- Ctrl-C
def interrupted_message(kept, resume_hint="re-run the same command to resume") -> str:
    """The one line printed on Ctrl-C, e.g. 'Interrupted: kept 12 of 20 sequences in runs/x; re-run the
    same command to resume.'"""
    line = f"Interrupted: kept {kept}; {resume_hint}".rstrip(". ")
    return " ".join(line.split()) + "."


@contextlib.contextmanager
def handle_interrupt(kept, resume_hint="re-run the same command to resume", stream=None):
    """Turn a KeyboardInterrupt into one `interrupted_message` line on stderr and exit status 130.

    `kept` is the text or a function returning it (called after the interrupt, so it can count files).
    """
    try:
        yield
    except KeyboardInterrupt:
        text = kept() if callable(kept) else kept
        stream = sys.stderr if stream is None else stream
        prefix = "\n" if _is_terminal(stream) else ""     # end a half-drawn bar first
        stream.write(prefix + interrupted_message(text, resume_hint) + "\n")
        stream.flush()
        raise SystemExit(130) from None
