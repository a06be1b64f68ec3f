"""A newcomer's path on the command line: extract -> propagate --cache <root> --score -> score --results RUN,
cache info -v, a small sweep, and an example in every --help (synthetic data, random weights, CPU)."""
import json
import os
import re

import pytest
from click.testing import CliRunner

from lpcache.cli import cli
from lpcache.synthetic import make_synthetic_davis

SEQUENCES = ["synthetic-00", "synthetic-01", "synthetic-02"]
CPU = ["--device", "cpu", "--no-progress"]
PARAMS = ["--temperature", "0.7", "--topk", "4", "--radius", "6", "--video-len", "3"]


def invoke(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result.output


def global_row(output):
    """The numbers under the 'Global results' header of a printed J&F table."""
    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if "Global results" in line)
    return [float(v) for v in lines[at + 2].split()]


def object_rows(output):
    return dict(re.findall(r"^\s*(synthetic-\d\d_\d)\s+(\d\.\d{3}\s+\d\.\d{3})$", output, re.M))


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """3 short synthetic sequences and a random-init efficientnet_lite0 cache of them (native protocol)."""
    base = tmp_path_factory.mktemp("newcomer")
    davis = make_synthetic_davis(str(base / "davis"), n_sequences=3, n_frames=4, hw=(64, 96), n_objects=2)
    cache = base / "cache"
    invoke(["extract", "--davis", davis, "--cache", str(cache), "--random-init", "--protocol", "native",
            "--num-workers", "0", "--batch-size", "4"] + CPU)
    return base, davis, str(cache)


@pytest.fixture(scope="module")
def propagated(extracted):
    base, davis, cache = extracted
    output = invoke(["propagate", "--cache", cache, "--davis", davis, "--out", str(base / "runs"), "--score"]
                    + PARAMS + CPU)
    (run,) = [os.path.join(base / "runs", n) for n in os.listdir(base / "runs")]
    return run, output


def test_propagate_with_extract_root_prints_the_table_and_paths(propagated):
    run, output = propagated
    assert "Global results for val" in output and sorted(object_rows(output)) == [
        f"{s}_{i}" for s in SEQUENCES for i in (1, 2)]
    scores = json.load(open(os.path.join(run, "scores.json")))
    assert global_row(output)[0] == round(scores["global"]["J&F-Mean"], 3)
    for name in ("global_results-val.csv", "per-sequence_results-val.csv", "scores.json"):
        assert os.path.join(run, name) in output
    record = json.load(open(os.path.join(run, "run.json")))
    assert record["device"] == "cpu" and sorted(record["sequences"]) == SEQUENCES


def test_score_results_alone_prints_the_same_numbers(propagated):
    run, output = propagated
    again = invoke(["score", "--results", run, "--no-progress"])
    assert global_row(again) == global_row(output) and object_rows(again) == object_rows(output)


def test_score_results_uses_the_seed_size_and_names_the_fix(extracted, tmp_path):
    """A seed-protocol cache writes 480x880 masks: `score --results` needs no --gt-size; a wrong one says
    which size to give."""
    base, davis, _ = extracted
    cache = tmp_path / "cache"
    invoke(["extract", "--davis", davis, "--cache", str(cache), "--random-init", "--sequences", SEQUENCES[0],
            "--num-workers", "0"] + CPU)
    out = invoke(["propagate", "--cache", str(cache), "--davis", davis, "--out", str(tmp_path / "runs"),
                  "--sequences", SEQUENCES[0], "--score"] + PARAMS + CPU)
    (run,) = [os.path.join(tmp_path / "runs", n) for n in os.listdir(tmp_path / "runs")]
    assert global_row(invoke(["score", "--results", run, "--no-progress"])) == global_row(out)
    wrong = CliRunner().invoke(cli, ["score", "--results", run, "--gt-size", "240x432", "--no-progress"])
    assert wrong.exit_code == 1 and "use --gt-size 480x880" in wrong.output, wrong.output


def test_cache_info_verbose_before_and_after(extracted):
    _, _, cache = extracted
    for args in (["cache", "info", cache, "-v"], ["-v", "cache", "info", cache]):
        output = invoke(args)
        assert "efficientnet_lite0" in output and "3 sequences" in output
        assert "sequences: " + ", ".join(SEQUENCES) in output


def test_verbose_after_the_subcommand_logs(propagated, extracted):
    run, _ = propagated
    _, davis, cache = extracted
    result = CliRunner().invoke(cli, ["propagate", "--cache", cache, "--davis", davis, "--out",
                                      os.path.dirname(run), "-v"] + PARAMS + CPU)
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output and "3 of 3 sequences already done" in result.output


def test_sweep_lists_every_setting(extracted, tmp_path):
    _, davis, cache = extracted
    output = invoke(["sweep", "--cache", cache, "--davis", davis, "--out", str(tmp_path / "sweep"),
                     "--temperature", "0.1,0.7", "--topk", "2,4", "--radius", "6", "--video-len", "3"] + CPU)
    rows = json.load(open(tmp_path / "sweep" / "sweep.json"))["results"]
    assert len(rows) == 4
    for row in rows:
        assert re.search(rf"^\s*\d+\s+{re.escape(row['setting'])}\s+{row['J&F-Mean']:.3f}\s", output, re.M), row
    for name in ("leaderboard.md", "provenance.json"):
        assert str(tmp_path / "sweep" / name) in output
    assert json.load(open(tmp_path / "sweep" / "sweep.json"))["provenance"]["device"] == "cpu"


def test_sweep_prints_its_size_before_it_starts(extracted, tmp_path):
    _, davis, cache = extracted
    result = CliRunner().invoke(cli, ["sweep", "--cache", cache, "--davis", davis, "--out", str(tmp_path / "s"),
                                      "--temperature", "0.1,0.7", "--radius", "6", "--video-len", "3",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "sweep: 2 settings x 3 videos x 12 frames (1 backbone)" in result.output
    assert "rough estimate" in result.output
    assert "\r" not in result.output          # not a terminal: plain lines


def test_every_help_has_an_example():
    names = list(cli.commands)
    assert len(names) >= 11
    for name in names:
        assert "Example" in invoke([name, "--help"]), name
    for sub in ("info", "verify"):
        assert "Example" in invoke(["cache", sub, "--help"])


def test_backbones_table_has_a_header():
    lines = invoke(["backbones"]).splitlines()
    assert lines[0].split()[:3] == ["name", "architecture", "layer"] and set(lines[1]) <= {"-", " "}
    assert any(line.startswith("efficientnet_lite0 ") for line in lines[2:])
