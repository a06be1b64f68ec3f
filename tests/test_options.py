"""options: the shared click options, parsed by tiny commands with click's CliRunner."""
import json
import logging

import click
import pytest
from click.testing import CliRunner

from lpcache import options
from lpcache.config import PRECISIONS


@click.command()
@options.cache_option
@options.davis_option
@options.set_option
@options.sequences_option
@options.device_option
@options.precision_option
@options.jobs_option
@options.num_workers_option
@options.progress_option
@options.grid_options
def everything(**values):
    click.echo(json.dumps(values, sort_keys=True))


def _parse(command, args):
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_defaults():
    values = _parse(everything, ["--cache", "c/r18-seed", "--davis", "d"])
    assert values == {"cache_dir": "c/r18-seed", "davis_root": "d", "set_name": "val", "sequences": None,
                      "device": None, "precision": "float32", "jobs": 1, "num_workers": 2, "progress": True,
                      "temperature": None, "topk": None, "radius": None, "video_len": None}


def test_given_values_are_converted():
    values = _parse(everything, ["--cache", "c", "--davis", "d", "--set", "train", "--sequences", " a, b,,c ",
                                 "--device", "cuda:1", "--precision", "bfloat16", "--jobs", "3", "--num-workers",
                                 "0", "--no-progress", "--temperature", "0.05,0.7", "--topk", "5,8",
                                 "--radius", "12", "--video-len", "7,20"])
    assert values["sequences"] == ["a", "b", "c"]
    assert values["device"] == "cuda:1" and values["precision"] == "bfloat16"
    assert values["jobs"] == 3 and values["num_workers"] == 0 and values["progress"] is False
    assert (values["temperature"], values["topk"], values["radius"], values["video_len"]) == \
        ("0.05,0.7", "5,8", "12", "7,20")        # text for lpcache.sweeping.grid_from_options
    assert _parse(everything, ["--cache", "c", "--davis", "d", "--device", "AUTO"])["device"] is None


@pytest.mark.parametrize("args, message", [
    ([], "Missing option '--cache'"),
    (["--cache", "c"], "Missing option '--davis'"),
    (["--cache", "c", "--davis", "d", "--precision", "float64"], "'float64' is not one of"),
    (["--cache", "c", "--davis", "d", "--jobs", "0"], "--jobs"),
    (["--cache", "c", "--davis", "d", "--num-workers", "-1"], "--num-workers"),
])
def test_bad_values_are_usage_errors(args, message):
    result = CliRunner().invoke(everything, args)
    assert result.exit_code == 2 and message in result.output


def test_help_shows_every_default_one_way():
    text = " ".join(CliRunner().invoke(everything, ["--help"]).output.split())
    for shown in ("[default: val]", "[default: all of the set]", "[default: auto]", "[default: float32]",
                  "[default: 1; x>=1]", "[default: 2; x>=0]", "[default: progress]", "[default: 0.7]", "[default: 8]",
                  "[default: 18]", "[default: 20]", "[required]"):
        assert shown in text, shown
    for precision in PRECISIONS:
        assert precision in text


def test_overrides_and_single_value_grid():
    @click.command()
    @options.cache_option(multiple=True)
    @options.davis_option(required=False, default=None, help="A DAVIS root (default: synthetic data).")
    @options.jobs_option(help="Scoring processes.")
    @options.grid_options(lists=False)
    def single(**values):
        click.echo(json.dumps(values, sort_keys=True))

    values = _parse(single, ["--cache", "a", "--cache", "b", "--topk", "12", "--temperature", "0.5"])
    assert values["caches"] == ["a", "b"] and values["davis_root"] is None
    assert values["topk"] == 12 and values["temperature"] == 0.5 and values["radius"] is None
    bad = CliRunner().invoke(single, ["--cache", "a", "--topk", "5,8"])
    assert bad.exit_code == 2 and "'5,8' is not a valid integer" in bad.output
    assert "A DAVIS root (default: synthetic data)." in CliRunner().invoke(single, ["--help"]).output


@click.group()
@options.verbose_option
def group():
    pass


@group.command()
@options.verbose_option
def level():
    click.echo(f"{logging.getLevelName(logging.getLogger().level)} {options.verbosity()}")


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.mark.parametrize("args, expected", [
    (["level"], "WARNING 0"),
    (["-v", "level"], "INFO 1"),
    (["level", "-v"], "INFO 1"),               # after the subcommand: same as before it
    (["level", "--verbose"], "INFO 1"),
    (["-v", "level", "-v"], "DEBUG 2"),        # counts add up
    (["level", "-vv"], "DEBUG 2"),
])
def test_verbose_before_or_after_the_subcommand(args, expected, restore_root_logger):
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == expected


def test_log_records_reach_the_current_stderr(restore_root_logger):
    @click.command()
    @options.verbose_option
    def talk():
        logging.getLogger("lpcache.test").info("hello from the library")

    for _ in range(2):              # a second run gets a new stderr: the handler follows it
        result = CliRunner().invoke(talk, ["-v"])
        assert result.exit_code == 0
        assert "lpcache.test INFO: hello from the library" in result.stderr
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, options._StderrHandler)]
    assert len(handlers) == 1
    quiet = CliRunner().invoke(talk, [])
    assert "hello" not in quiet.stderr
