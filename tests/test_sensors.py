"""sensors.py: the sensor registry (aliases, unknown names, MTF gains) and the sensor file `PANSHARP_SENSORS`."""

import pytest
from conftest import REPO, _one_error_line, cli

from pansharp_dist.errors import UnknownSensorError
from pansharp_dist.sensors import UNKNOWN, get_sensor


@pytest.mark.parametrize(
    "alias, sensor_id", [("WV3", "wv3"), ("WorldView-2", "wv2"), ("GeoEye1", "ge1"), ("WV4", "ge1"), ("QB", "qb")]
)
def test_sensor_aliases(alias, sensor_id):
    assert get_sensor(alias).id == sensor_id


def test_unknown_sensor_name_is_a_clear_error_and_none_gives_defaults():
    with pytest.raises(UnknownSensorError, match="unknown sensor 'spot9'; use one of"):
        get_sensor("spot9")
    assert get_sensor(None) is UNKNOWN
    assert UNKNOWN.mtf_gains(4) == (0.3,) * 4 and UNKNOWN.mtf_pan == 0.15


def test_sensor_mtf_gains_match_the_published_values():
    assert get_sensor("qb").mtf_ms == (0.34, 0.32, 0.30, 0.22)
    assert get_sensor("wv2").mtf_gains(8)[-1] == 0.27
    with pytest.warns(UserWarning, match="mean MTF gain"):
        assert len(get_sensor("wv3").mtf_gains(4)) == 4


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "cannot read the sensor file"),
        (
            '[[sensor]]\nid = 5\nname = "x"\nbands = "abc"\nbit_depth = "12"\nratio = 4\nmtf_ms = [0.3]\n'
            "mtf_pan = 0.15\n"
            "rgb = [2, 1, 0]\n",
            "wrong values of id",
        ),
        ("title = 'no sensors here'\n", "holds no [[sensor]] tables"),
    ],
)
def test_a_broken_or_missing_sensor_file_is_one_error_line(tmp_path, inputs, content, words):
    sensors = tmp_path / "sensors.toml"
    if content is not None:
        sensors.write_text(content)
    env = {"PANSHARP_SENSORS": str(sensors)}
    result = cli("run", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(tmp_path / "o.tif"), env=env)
    assert words in _one_error_line(result) and not (tmp_path / "o.tif").exists()


def test_an_unknown_sensor_says_which_mtf_stands_in_and_how_to_name_it(tmp_path):
    import warnings

    from pansharp_dist.plan import plan_run
    from pansharp_dist.sensors import UnknownSensorWarning

    sample = REPO / "pansharp_dist" / "sample"
    pair = (sample / "pan.tif", sample / "ms.tif")
    with pytest.warns(UnknownSensorWarning, match=r"default gains 0.3 \(4 MS bands\) and 0.15 \(PAN\); name it with"):
        plan_run(*pair, tmp_path / "a.tif", method="mtf-glp-hpm")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownSensorWarning)
        plan_run(*pair, tmp_path / "b.tif", method="mtf-glp-hpm", sensor="qb")  # named: no warning
        plan_run(*pair, tmp_path / "c.tif", method="brovey")  # no MTF in Brovey: nothing to say
