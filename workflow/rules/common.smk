import functools
import sys
from pathlib import Path

from snakemake.utils import validate

# Files of this repository are found from this rule file (workflow.current_basedir,
# workflow.source_path), never from workflow.basedir: that is the including
# workflow's folder when pyama-flow is used as a module.
RULES_DIR = workflow.current_basedir.get_path_or_uri(secret_free=True)
REPO_SRC = Path(RULES_DIR).parents[1] / "src"
if "://" not in RULES_DIR and REPO_SRC.is_dir():  # a local copy: its library first
    sys.path.insert(0, str(REPO_SRC))


class ConfigError(Exception):
    pass


try:
    from pyama_flow.io.fovs import parse_fovs
    from pyama_flow.io import read_metadata
    from pyama_flow.io.fingerprint import (
        fingerprint as input_fingerprint,
        plane_bytes_of,
    )
except ImportError as exc:  # e.g. a Snakemake-only environment under --sdm conda
    raise ConfigError(
        f"the Snakemake process itself needs pyama-flow's dependencies ({exc}): run it where "
        "'pip install -c requirements-lock.txt -e .' was done, or in envs/snakemake.yaml "
        "(envs/README.md)"
    ) from None


def fail(message):
    raise ConfigError(message)


def check_schema():
    """The config against the schema, failing with one line that names the key
    (Snakemake's own message prints the whole schema); ``validate`` below then
    fills in the defaults."""
    import jsonschema
    import yaml

    schema_path = Path(workflow.source_path("../schemas/config.schema.yaml"))
    schema = yaml.safe_load(schema_path.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(config)))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "config"
        fail(f"{where}: {error.message} (config/README.md lists every key)")


def _yaml_nodes(node, path):
    """(key path, key node, value node) of every mapping entry under a composed YAML node."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            yield path + (key,), key_node, value_node
            yield from _yaml_nodes(value_node, path + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _yaml_nodes(item, path + (str(i),))


def check_duplicate_keys():
    """Each config file Snakemake read (``--configfile``, ``configfile:``), again:
    a key written twice in one mapping fails (YAML loaders keep the last one
    silently), naming the key, the file and both lines."""
    import yaml

    for path in dict.fromkeys(
        str(p) for p in getattr(workflow, "configfiles", None) or ()
    ):
        try:
            with open(path) as fh:
                root = yaml.compose(fh, Loader=yaml.SafeLoader)
        except (OSError, yaml.YAMLError):
            continue  # Snakemake read it already and reports its own errors
        seen = {}
        for keys, key_node, _ in _yaml_nodes(root, ()):
            if keys[-1] == "<<":  # YAML merge key: may repeat by design
                continue
            line = key_node.start_mark.line + 1
            if keys in seen:
                fail(
                    f"{'.'.join(keys)}: written twice in {path} (lines {seen[keys]} and {line}; "
                    "the last one would win silently); keep one"
                )
            seen[keys] = line


def check_finite(node=None, where=()):
    """Every number in the config is finite: ``.nan`` / ``.inf`` fail naming the key
    (they pass the schema's bounds, since NaN compares false)."""
    import math

    node = config if node is None else node
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node) if isinstance(node, list) else ()
    )
    for key, value in items:
        if isinstance(value, float) and not math.isfinite(value):
            fail(
                f"{'.'.join(map(str, where + (key,)))}: {value} is not a finite number; give a number"
            )
        check_finite(value, where + (key,))


check_duplicate_keys()
check_finite()
check_schema()
validate(config, schema="../schemas/config.schema.yaml", set_default=True)

RESULTS = "results"
SIM = config.get("simulate")
SIM_CHANNELS = ["Phase", "GFP"]


wildcard_constraints:
    dataset="[A-Za-z0-9][A-Za-z0-9_.-]*",
    fov="[0-9][0-9][0-9]+",
    c="[0-9]+",
    model="[a-z_]+",


@functools.cache
def dataset_info(dataset):
    """FOV count and channel names of a dataset's input, read once per run."""
    ds = config["datasets"][dataset]
    path = ds["input"]
    if (
        SIM is not None
        and Path(path) == Path(SIM["output"])
        and not Path(path).exists()
    ):
        return {
            "n_fovs": SIM["n_fovs"],
            "n_z": 1,
            "channels": SIM_CHANNELS,
            "has_times": True,
            "fingerprint": None,
        }
    if not Path(path).exists():
        fail(
            f"datasets.{dataset}.input: file not found: {path} (check the path; a relative "
            f"path starts from the working directory {Path.cwd()})"
        )
    try:
        meta = read_metadata(path, **ds.get("reader", {}))
    except ValueError as exc:
        fail(f"datasets.{dataset}.input: {exc}")
    if SIM is not None and Path(path) == Path(SIM["output"]):
        # made by the simulate rule: Snakemake follows it as a rule output
        fp = None
    else:
        fp = input_fingerprint(path, plane_bytes_of(meta))
    return {
        "n_fovs": meta.n_fovs,
        "n_z": meta.n_z,
        "channels": meta.channel_names,
        "has_times": meta.time_min is not None,
        "fingerprint": fp,
    }


def dataset_fingerprint(wc):
    """Content fingerprint of the dataset's input at the start of the run
    (pyama_flow.io.fingerprint): a params value of the metadata and extract
    rules, so an input replaced with its mtime kept reruns them."""
    return dataset_info(wc.dataset)["fingerprint"]


def frame_interval(dataset):
    """The config's frame interval, only where the file has no time stamps
    (so that editing it does not rerun anything for files that have them)."""
    if dataset_info(dataset)["has_times"]:
        return None
    return config["datasets"][dataset]["frame_interval_min"]


def channel_index(dataset, channel, key):
    names = dataset_info(dataset)["channels"]
    if isinstance(channel, int):
        if not 0 <= channel < len(names):
            fail(
                f"datasets.{dataset}.{key}: channel {channel} out of range (valid: 0-{len(names) - 1})"
            )
        return channel
    if channel in names:
        return names.index(channel)
    fail(f"datasets.{dataset}.{key}: no channel named {channel!r} (channels: {names})")


@functools.cache
def channels(dataset):
    """(phase-contrast index, [fluorescence indices]) of a dataset."""
    ds = config["datasets"][dataset]
    pc = channel_index(dataset, ds["phase"], "phase")
    fl = [channel_index(dataset, c, "fluorescence") for c in ds["fluorescence"]]
    if pc in fl and not ds["same_channel"]:
        fail(
            f"datasets.{dataset}: channel {pc} is both phase and fluorescence "
            "(set same_channel: true to segment and measure one channel)"
        )
    if len(set(fl)) != len(fl):
        twice = next(c for c in fl if fl.count(c) > 1)
        fail(
            f"datasets.{dataset}.fluorescence: a channel is listed twice (channel {twice}); "
            "list each channel once"
        )
    check_z(dataset)
    return pc, fl


def check_z(dataset):
    """A Z plane index beyond the file's Z planes: fail now, not in every extract job."""
    z, n_z = config["datasets"][dataset]["z"], dataset_info(dataset)["n_z"]
    if z != "max" and not 0 <= int(z) < n_z:
        fail(
            f"datasets.{dataset}.z: Z plane {z} is outside the file (valid: 0-{n_z - 1}, or 'max')"
        )


@functools.cache
def fovs(dataset):
    ds = config["datasets"][dataset]
    try:
        return parse_fovs(
            ds.get("fovs", "all"),
            dataset_info(dataset)["n_fovs"],
            f"datasets.{dataset}.fovs",
        )
    except ValueError as exc:
        fail(str(exc))


#: the raw extract of a FOV channel: a stack (storage.raw keep / temp) or a
#: reference into the input file (storage.raw: source, nothing copied)
RAW_SUFFIX = "json" if config["storage"]["raw"] == "source" else "tif"


def raw_compression():
    """Codec of the raw extract: the configured one where it is kept; none where it
    is temp() (``storage.raw: temp``), the input file still holding the data."""
    opts = config["storage"]
    return opts["compression"] if opts["raw"] == "keep" else "none"


def raw_output(path):
    """The raw extract: kept, or ``temp()`` (deleted once every job reading it
    is done) with ``storage.raw: temp``."""
    return temp(path) if config["storage"]["raw"] == "temp" else path


def raw_file(dataset, fov, c):
    """The raw extract of channel ``c`` of a FOV."""
    return f"{fov_dir(dataset, fov)}/raw_ch{c}.{RAW_SUFFIX}"


def fov_dir(dataset, fov):
    return f"{RESULTS}/{dataset}/fov_{int(fov):03d}"


def samples():
    """name -> (dataset, [fovs]), checked against the processed FOVs."""
    out = {}
    for s in config.get("samples", []):
        ds = s["dataset"]
        if ds not in config["datasets"]:
            fail(
                f"samples.{s['name']}.dataset: unknown dataset {ds!r} "
                f"(datasets: {list(config['datasets'])})"
            )
        try:
            sel = parse_fovs(
                s["fovs"], dataset_info(ds)["n_fovs"], f"samples.{s['name']}.fovs"
            )
        except ValueError as exc:
            fail(str(exc))
        missing = sorted(set(sel) - set(fovs(ds)))
        if missing:
            fail(
                f"samples.{s['name']}.fovs: FOV {missing[0]} is not processed (datasets.{ds}.fovs); "
                "add it there or remove it from the sample"
            )
        if s["name"] in out:
            fail(
                f"samples: name {s['name']!r} used twice; give each sample its own name"
            )
        out[s["name"]] = (ds, sel)
    return out


def check_fit_params():
    """Unknown models or parameters, lb > ub, a value outside its bounds: fail now."""
    from pyama_flow.fitting.params import resolve_params
    from pyama_flow.fitting.models import get_model, list_models

    for model, overrides in config["fit"]["params"].items():
        if model not in list_models():
            fail(f"fit.params.{model}: unknown model (models: {list_models()})")
        try:
            resolve_params(get_model(model), overrides)
        except ValueError as exc:
            fail(f"fit.params.{model}: {exc}")


check_fit_params()


def fit_channel(dataset):
    pc, fl = channels(dataset)
    chosen = config["fit"].get("channel")
    if chosen is None:
        return fl[0]
    c = channel_index(dataset, chosen, "fit.channel")
    if c not in fl:
        fail(
            f"fit.channel: channel {chosen!r} is not a fluorescence channel of {dataset} "
            f"(choose one of datasets.{dataset}.fluorescence)"
        )
    return c


def feature_columns(dataset):
    pc, fl = channels(dataset)
    return [f"area_ch_{pc}"] + [f"intensity_total_ch_{c}" for c in fl]


def log_path(rule_name, wc):
    return f"{RESULTS}/logs/{wc.dataset}/fov_{wc.fov}/{rule_name}.log"


ANALYSIS_TABLES = (
    "parameters",
    "summary",
    "median_trace",
    "pca_scores",
    "pca_components",
    "pca_explained",
)
ANALYSIS_PLOTS = ("parameters", "r_squared", "examples", "median_trace", "pca")


def analysis_fits(model):
    """(fits file, sample) of every FOV in a sample."""
    return [
        (f"{fov_dir(ds, f)}/fits_{model}.csv", name)
        for name, (ds, sel) in samples().items()
        for f in sel
    ]


def analysis_traces():
    """(merged traces of the fitted column, sample) of every sample."""
    return [
        (
            f"{RESULTS}/samples/{name}/{name}_{config['fit']['feature']}_ch_{fit_channel(ds)}.csv",
            name,
        )
        for name, (ds, _sel) in samples().items()
    ]


def all_outputs():
    out = []
    for ds in config["datasets"]:
        out.append(f"{RESULTS}/{ds}/metadata.json")
        for fov in fovs(ds):
            d = fov_dir(ds, fov)
            out.append(f"{d}/traces.csv")
            out += [f"{d}/fits_{m}.csv" for m in config["fit"]["models"]]
            if len(config["fit"]["models"]) > 1:
                out.append(f"{d}/model_choice.csv")
    for name, (ds, _sel) in samples().items():
        out += [
            f"{RESULTS}/samples/{name}/{name}_{col}.csv" for col in feature_columns(ds)
        ]
    out.append(f"{RESULTS}/all_traces.csv")
    if samples():
        out += [f"{RESULTS}/analysis/{m}/summary.csv" for m in config["fit"]["models"]]
    out += qc_outputs()
    return out


# -- input functions of the rules --------------------------------------


def dataset_input(wc):
    return config["datasets"][wc.dataset]["input"]


def segmentation_params(wc):
    method = config["segmentation"]["method"]
    if method == "external":
        return {}
    return dict(config["segmentation"].get(method, {}))


def external_labels(dataset, fov):
    """The label stack of a FOV under ``segmentation.method: external``."""
    from pyama_flow.io.base import InputError
    from pyama_flow.segmentation.step import external_labels_path

    try:
        return external_labels_path(
            config["segmentation"]["external"]["path"], dataset, fov
        )
    except InputError as exc:
        fail(str(exc))


def check_external_segmentation():
    """``segmentation.method: external`` needs a path pattern, and every selected
    FOV's file must exist (checked now, one line naming the first missing file)."""
    if config["segmentation"]["method"] != "external":
        return
    if not config["segmentation"]["external"].get("path"):
        fail(
            "segmentation.external.path: method external needs the path of each FOV's labels "
            "(a pattern with {dataset} and {fov}, e.g. masks/{dataset}/fov_{fov:03d}.tif)"
        )
    for dataset in config["datasets"]:
        for fov in fovs(dataset):
            path = external_labels(dataset, fov)
            if not Path(path).is_file():
                fail(
                    f"segmentation.external.path: {path} not found (dataset {dataset}, FOV {fov})"
                )


check_external_segmentation()


def segment_input(wc):
    """The phase channel's frames, and with method external the FOV's label stack."""
    out = {"raw": raw_file(wc.dataset, wc.fov, channels(wc.dataset)[0])}
    if config["segmentation"]["method"] == "external":
        out["labels"] = external_labels(wc.dataset, int(wc.fov))
    return out


def expand_px():
    """Margin of ``intensity_total`` (traces.measure: expanded), 0 for PyAMA's in-mask sum."""
    traces = config["traces"]
    return float(traces["expand_px"]) if traces["measure"] == "expanded" else 0.0


def traces_input(wc):
    d = fov_dir(wc.dataset, wc.fov)
    _pc, fl = channels(wc.dataset)
    return {
        "labels": f"{d}/labels.tif",
        "lineage": f"{d}/tracks.csv",
        "metadata": f"{RESULTS}/{wc.dataset}/metadata.json",
        "raw": [raw_file(wc.dataset, wc.fov, c) for c in fl],
        "background": [f"{d}/background_ch{c}.npz" for c in fl],
    }


def curation_file(dataset, fov):
    """The FOV's decisions log (curation.csv) as a list of 0 or 1 input: its
    mtime changes with each decision, so a decision reruns that FOV's fits and
    the merges. PyAMA's traces_inspected.csv is imported into it first
    (pyama_flow.traces.curation); the scripts read traces.csv with the decisions
    applied (curation.read_curated)."""
    from pyama_flow.traces.curation import DECISIONS, import_inspected

    d = Path(fov_dir(dataset, fov))
    if d.is_dir():
        import_inspected(d)
    p = d / DECISIONS
    return [str(p)] if p.is_file() else []


def fit_input(wc):
    return {
        "traces": f"{fov_dir(wc.dataset, wc.fov)}/traces.csv",
        "curation": curation_file(wc.dataset, wc.fov),
    }


def sample_traces(wc):
    ds, sel = samples()[wc.sample]
    return {
        "traces": [f"{fov_dir(ds, f)}/traces.csv" for f in sel],
        "curation": [p for f in sel for p in curation_file(ds, f)],
    }


def all_traces_input():
    keys = [(ds, f) for ds in config["datasets"] for f in fovs(ds)]
    return {
        "traces": [f"{fov_dir(ds, f)}/traces.csv" for ds, f in keys],
        "curation": [p for ds, f in keys for p in curation_file(ds, f)],
    }


# -- quality control and report (workflow/rules/qc.smk) ----------------


def qc_channels(dataset):
    """Every extracted channel of a dataset: phase contrast first, then fluorescence."""
    pc, fl = channels(dataset)
    return [pc] + [c for c in fl if c != pc]


def qc_channel_label(dataset, c):
    """'GFP (ch 1)': a channel's name and index, for titles and report labels."""
    names = dataset_info(dataset)["channels"]
    c = int(c)
    return f"{names[c] if c < len(names) else 'channel'} (ch {c})"


def fov_sample(dataset, fov):
    """Name of the first sample that contains a FOV, or None."""
    for name, (ds, sel) in samples().items():
        if ds == dataset and int(fov) in sel:
            return name
    return None


def fov_color(dataset, fov):
    """The colour of a FOV's sample (one per sample, in config order) for its QC figures."""
    from pyama_flow.report.display import sample_color

    return sample_color(fov_sample(dataset, fov), list(samples()))


def qc_subcategory(wc):
    """Report subcategory of a FOV's QC: its sample, else '<dataset> (no sample)'."""
    name = fov_sample(wc.dataset, wc.fov)
    return name if name is not None else f"{wc.dataset} (no sample)"


def qc_raw_input(wc):
    return [raw_file(wc.dataset, wc.fov, c) for c in qc_channels(wc.dataset)]


def qc_phase_input(wc):
    return raw_file(wc.dataset, wc.fov, channels(wc.dataset)[0])


def sample_fits(wc):
    """fits_{model}.csv of every FOV of a sample."""
    ds, sel = samples()[wc.sample]
    return [f"{fov_dir(ds, f)}/fits_{wc.model}.csv" for f in sel]


def sample_fit_traces(wc):
    """The sample's merged table of the fitted column (fit.feature of fit.channel)."""
    ds, _sel = samples()[wc.sample]
    col = f"{config['fit']['feature']}_ch_{fit_channel(ds)}"
    return f"{RESULTS}/samples/{wc.sample}/{wc.sample}_{col}.csv"


def sample_color_of(name):
    """The colour of a sample (one per sample, in config order)."""
    from pyama_flow.report.display import sample_color

    return sample_color(name, list(samples()))


def overview_fovs():
    """(dataset, fov, sample) of every processed FOV, in config order."""
    return [
        (ds, int(f), fov_sample(ds, f)) for ds in config["datasets"] for f in fovs(ds)
    ]


def overview_pages():
    """Pages of the overview's all-traces figure: 100 FOVs each (at least one)."""
    from pyama_flow.report.overview import FOVS_PER_PAGE

    return list(range(max(1, -(-len(overview_fovs()) // FOVS_PER_PAGE))))


def overview_input(wc):
    """Every FOV's results the overview reads, by kind, in overview_fovs() order."""
    keys = overview_fovs()
    models = config["fit"]["models"]
    return {
        "trace_stats": [f"{fov_dir(ds, f)}/trace_stats.json" for ds, f, _s in keys],
        "traces": [f"{fov_dir(ds, f)}/traces.csv" for ds, f, _s in keys],
        "curation": [p for ds, f, _s in keys for p in curation_file(ds, f)],
        "fits": [
            f"{fov_dir(ds, f)}/fits_{m}.csv" for ds, f, _s in keys for m in models
        ],
        "frame_stats": [
            f"{fov_dir(ds, f)}/frame_stats_ch{c}.csv"
            for ds, f, _s in keys
            for c in channels(ds)[1]
        ],
        "summaries": [
            f"{RESULTS}/samples/{name}/qc/{m}_summary.csv"
            for name in samples()
            for m in models
        ],
    }


def qc_outputs():
    """QC figures and tables of every FOV, and the parameters page, for the report."""
    out = [f"{RESULTS}/qc/config.html"]
    out += [f"{RESULTS}/qc/overview/overview.html", f"{RESULTS}/qc/overview/fovs.csv"]
    out += [f"{RESULTS}/qc/overview/traces_{p}.png" for p in overview_pages()]
    if samples():
        out.append(f"{RESULTS}/qc/overview/samples.png")
    for ds in config["datasets"]:
        _pc, fl = channels(ds)
        for fov in fovs(ds):
            q = f"{fov_dir(ds, fov)}/qc"
            out += [f"{q}/frames.png", f"{q}/outlines.png", f"{q}/cells.png"]
            out += [f"{q}/background_ch{c}.png" for c in fl]
            for c in qc_channels(ds):
                out += [f"{q}/frame_stats_ch{c}.png", f"{q}/frame_stats_ch{c}.html"]
    for name in samples():
        for m in config["fit"]["models"]:
            out.append(f"{RESULTS}/samples/{name}/qc/{m}_summary.csv")
    return out
