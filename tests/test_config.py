"""Bad configurations are rejected before any job runs, naming the key."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
DEMO = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def dry_run(tmp_path: Path, config: dict) -> subprocess.CompletedProcess:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(cfg), "-n", "--quiet"],
        capture_output=True, text=True, cwd=tmp_path,
    )


def edited(**changes) -> dict:
    cfg = copy.deepcopy(DEMO)
    for dotted, value in changes.items():
        node = cfg
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {}) if isinstance(node, dict) else node[int(k)]
        if isinstance(node, list):
            node[int(keys[-1])] = value
        else:
            node[keys[-1]] = value
    return cfg


def test_demo_config_is_valid(tmp_path):
    proc = dry_run(tmp_path, DEMO)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "config,message",
    [
        (edited(segmentaton={"method": "logstd"}), "'segmentaton' was unexpected"),
        (edited(background__tile_size="big"), "'big' is not of type 'integer'"),
        (edited(tracking__max_gap=-1), "max_gap"),
        (edited(fit__models=["maturashun"]), "'maturashun' is not one of"),
        (edited(datasets__demo__fovs="0-5"), "datasets.demo.fovs: FOV 2 is outside the file (valid: 0-1)"),
        (edited(datasets__demo__fluorescence=["GFP", "Phase"]), "channel 0 is both phase and fluorescence"),
        (edited(datasets__demo__phase="DIC"), "datasets.demo.phase: no channel named 'DIC'"),
        (edited(datasets__demo__fovs="0"), "samples.treated.fovs: FOV 1 is not processed"),
        (edited(datasets__demo__input="missing.nd2"), "datasets.demo.input: file not found: missing.nd2"),
        (edited(fit__params={"maturation": {"foo": {"value": 1}}}),
         "fit.params.maturation: model 'maturation': unknown parameter 'foo'"),
        (edited(fit__params={"maturation": {"delta": {"lb": 5, "ub": 1}}}),
         "fit.params.maturation: model 'maturation', parameter 'delta': lower bound 5 > upper bound 1"),
        (edited(fit__params={"maturation": {"delta": {"value": 50}}}),
         "parameter 'delta': value 50 outside bounds [1e-05, 11]"),
        (edited(fit__params={"matur": {"delta": {"value": 0.1}}}), "fit.params.matur: unknown model"),
        (edited(datasets__demo__fluorescence=["GFP", "GFP"]), "a channel is listed twice"),
        (edited(segmentation__method="external"), "segmentation.external.path: method external needs"),
        (edited(segmentation__method="external", segmentation__external={"path": "masks/{dataset}_{fov:03d}.tif"}),
         "segmentation.external.path: masks/demo_000.tif not found (dataset demo, FOV 0)"),
        (edited(segmentation__method="external", segmentation__external={"path": "masks/{well}.tif"}),
         "placeholders are {dataset} and {fov}"),
        (edited(traces__measure="ring"), "traces.measure: 'ring' is not one of ['expanded', 'mask']"),
    ],
)
def test_bad_config_names_the_key(tmp_path, config, message):
    proc = dry_run(tmp_path, config)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


@pytest.mark.parametrize("method", ["logstd", "watershed"])
def test_every_segmentation_parameter_is_in_the_schema_and_documented(method):
    """Each keyword of a segmentation method can be set from the config
    (schema) and has a row in config/README.md, and the schema has no key the
    method would not accept."""
    import inspect

    from pyama_flow.segmentation import get_method

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    keys = set(schema["properties"]["segmentation"]["properties"][method]["properties"])
    params = set(list(inspect.signature(get_method(method)).parameters)[1:])  # after the image
    params.discard("return_info")  # diagnostics for the benchmark, not a setting
    assert keys == params
    doc = (ROOT / "config" / "README.md").read_text()
    prefix = "logstd." if method == "logstd" else ""
    assert [p for p in sorted(params) if f"| `{prefix}{p}` |" not in doc] == []


@pytest.mark.parametrize("name", ["config.yaml", "exp.yaml", "examples/nd2_timelapse.yaml"])
def test_shipped_configs_follow_the_schema(name):
    """The demo, the experiment template and the examples use only keys and values
    the schema knows (e.g. storage.raw, which replaced storage.keep_raw)."""
    import jsonschema

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    cfg = yaml.safe_load((ROOT / "config" / name).read_text())
    jsonschema.validate(cfg, schema)
    with pytest.raises(jsonschema.ValidationError, match="keep_raw"):
        jsonschema.validate({**cfg, "storage": {"keep_raw": False}}, schema)


def test_every_model_parameter_is_documented_with_its_default_unit_and_meaning():
    """config/README.md has one row per model parameter whose default, bounds,
    fixed flag, unit and meaning are the model module's (DEFAULTS, INFO): the
    table cannot drift from the code."""
    from pyama_flow.fitting.models import get_model, list_models

    doc = (ROOT / "config" / "README.md").read_text()
    missing = []
    for m in list_models():
        mod = get_model(m)
        assert set(mod.INFO) == set(mod.PARAMS), m
        for n in mod.PARAMS:
            d, i = mod.DEFAULTS[n], mod.INFO[n]
            assert i.unit and i.meaning, (m, n)
            row = (f"| `{m}` | `{n}` | {i.unit} | {d.value:g} | [{d.lb:g}, {d.ub:g}] | "
                   f"{'fixed' if d.fixed else 'fitted'} | {i.meaning} |")
            if row not in doc:
                missing.append(row)
    assert missing == []
