"""Grid spec of `lpcache sweep`: command-line lists, TOML / JSON files, validation, stable setting ids."""
import json

import pytest

from lpcache.config import PropagationParams, SweepGrid
from lpcache.errors import InputError
from lpcache.sweeping import grid_from_options, load_grid, parse_values


def test_command_line_lists_expand_in_grid_order():
    grid = grid_from_options(temperature="0.05,0.1,0.7", topk="5,8,12", radius="12,18,32", video_len="7,20")
    settings = grid.settings()
    assert len(settings) == 3 * 3 * 3 * 2 == len(grid)
    assert settings[0] == PropagationParams(0.05, 5, 12.0, 7)
    assert settings[1] == PropagationParams(0.05, 5, 12.0, 20)
    assert settings[2] == PropagationParams(0.05, 5, 18.0, 7)
    assert settings[-1] == PropagationParams(0.7, 12, 32.0, 20)
    assert [p.id for p in settings[:2]] == ["t0.05_k5_r12_L7", "t0.05_k5_r12_L20"]
    assert len({p.id for p in settings}) == len(settings)
    assert all(isinstance(p.topk, int) and isinstance(p.radius, float) for p in settings)


def test_missing_axes_take_the_seed_defaults_and_duplicates_collapse():
    grid = grid_from_options(topk="8, 5 ,8")
    assert [p.id for p in grid.settings()] == ["t0.7_k8_r18_L20", "t0.7_k5_r18_L20"]


def test_ids_are_stable_across_spellings():
    a = grid_from_options(temperature="0.10", radius="18.0", topk="8.0", video_len="20")
    b = SweepGrid.from_mapping({"temperature": [0.1], "radius": [18], "topk": [8], "video_len": [20]})
    assert [p.id for p in a.settings()] == [p.id for p in b.settings()] == ["t0.1_k8_r18_L20"]


def test_toml_and_json_files(tmp_path):
    toml = tmp_path / "grid.toml"
    toml.write_text("temperature = [0.05, 0.7]\ntopk = [5, 8]\nradius = [12]\nvideo_len = [7, 20]\n")
    js = tmp_path / "grid.json"
    js.write_text(json.dumps({"temperature": [0.05, 0.7], "topk": [5, 8], "radius": [12], "video_len": [7, 20]}))
    assert load_grid(toml) == load_grid(js)
    assert len(load_grid(toml)) == 8
    # a command-line list replaces the file's list for that key only
    grid = grid_from_options(toml, topk="12")
    assert {p.topk for p in grid.settings()} == {12} and len(grid) == 4
    assert {p.temperature for p in grid.settings()} == {0.05, 0.7}


@pytest.mark.parametrize("content, message", [
    ("temperature = [0.1]\ntemprature = [0.2]\n", "unknown key(s) temprature"),
    ("topk = []\n", "topk has no value"),
    ("temperature = [0.0]\n", "temperature 0.0: must be a positive number"),
    ("radius = [-3]\n", "radius -3.0: must be positive"),
    ("topk = [0]\n", "topk 0: must be at least 1"),
    ("video_len = [0]\n", "video_len 0: must be at least 1"),
    ("topk = [2.5]\n", "must be an integer"),
    ("topk = [true]\n", "is not a number"),
    ("temperature = ['hot']\n", "is not a number"),
    ("temperature = [nan]\n", "must be a positive number"),
    ("temperature = [0.1\n", "not a valid TOML file"),
])
def test_bad_grid_files_are_input_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "grid.toml"
    path.write_text(content)
    with pytest.raises(InputError) as error:
        grid_from_options(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_bad_command_line_lists():
    with pytest.raises(InputError, match="empty grid"):
        grid_from_options()
    with pytest.raises(InputError, match="--topk: empty list"):
        grid_from_options(topk="")
    with pytest.raises(InputError, match="empty item"):
        grid_from_options(temperature="0.1,,0.7")
    with pytest.raises(InputError, match="temperature -1.0"):
        grid_from_options(temperature="0.1,-1")
    with pytest.raises(InputError, match="--video-len"):
        parse_values(" , ", "--video-len")


def test_other_grid_file_problems(tmp_path):
    with pytest.raises(InputError, match="grid file not found"):
        grid_from_options(tmp_path / "nope.toml")
    other = tmp_path / "grid.yaml"
    other.write_text("topk: [5]\n")
    with pytest.raises(InputError, match=r"must end in \.toml or \.json"):
        load_grid(other)
    listed = tmp_path / "grid.json"
    listed.write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a table"):
        load_grid(listed)


def test_direct_grid_validation():
    with pytest.raises(InputError, match="radius has no value"):
        SweepGrid(radius=()).validate()
    assert SweepGrid().settings() == [PropagationParams()]
    assert SweepGrid(topk=(5, 8)).as_dict() == {"temperature": [0.7], "topk": [5, 8], "radius": [18.0],
                                                 "video_len": [20]}
