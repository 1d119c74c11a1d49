"""Tests for config loading: defaults, unknown and mistyped keys named with their path and the file, `--set`
overrides, relative paths resolved against the config file's folder, and the cross-field checks.

Run: .venv/bin/pytest tests/test_config.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from culturemanager.config import DEFAULT_TEMPLATES, ConfigError, load_config

MINIMAL = """
[[cultures]]
name = "Spanish"
language = "es"

[[tasks]]
id = "hate"
label = "hate speech"
"""


def write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    return str(e.value)


# ---------------------------------------------------------------------------------------------- defaults

def test_minimal_config_loads_with_defaults(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert [c.name for c in cfg.cultures] == ["Spanish"]
    task = cfg.task("hate")
    assert task.format == "binary"
    assert task.labels == ["0", "1"]
    assert task.positive_label == "1"
    assert task.template == DEFAULT_TEMPLATES["binary"]
    assert "{input}" in task.template and "{task}" in task.template
    assert cfg.task_cultures(task) == cfg.cultures
    assert cfg.train.epochs == 3 and cfg.generator.backend == "local"


def test_true_false_defaults(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + 'format = "true_false"\n'))
    task = cfg.task("hate")
    assert task.labels == ["true", "false"]
    assert task.positive_label == "true"


def test_free_text_has_no_labels(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + 'format = "free_text"\nlabels = ["a"]\n'))
    assert cfg.task("hate").labels is None
    assert cfg.task("hate").positive_label is None


# ----------------------------------------------------------------------------------- unknown / bad keys

def test_unknown_top_level_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "colour = 1\n" + MINIMAL)
    msg = config_error(path)
    assert "unknown key `colour`" in msg
    assert str(path) in msg


def test_misspelled_nested_key_names_its_path(tmp_path):
    path = write(tmp_path, MINIMAL + "\n[train]\nepoch = 2\n")
    msg = config_error(path)
    assert "`train.epoch`" in msg
    assert str(path) in msg


def test_misspelled_key_in_task_table_names_its_path(tmp_path):
    path = write(tmp_path, MINIMAL + 'lable = "oops"\n')
    msg = config_error(path)
    assert "`tasks.0.lable`" in msg
    assert str(path) in msg


def test_misspelled_key_in_datafile_table_names_its_path(tmp_path):
    path = write(tmp_path, MINIMAL + 'demonstrations = [{path = "d.txt", txt_field = "x"}]\n')
    assert "`tasks.0.demonstrations.0.txt_field`" in config_error(path)


def test_missing_cultures_is_named(tmp_path):
    path = write(tmp_path, '[[tasks]]\nid = "hate"\nlabel = "hate speech"\n')
    msg = config_error(path)
    assert "missing key `cultures`" in msg
    assert str(path) in msg


def test_missing_task_label_is_named(tmp_path):
    path = write(tmp_path, '[[cultures]]\nname = "Spanish"\n[[tasks]]\nid = "hate"\n')
    assert "missing key `tasks.0.label`" in config_error(path)


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path, MINIMAL + '\n[train]\nepochs = "many"\n')
    msg = config_error(path)
    assert "`train.epochs`" in msg
    assert "integer" in msg


def test_bad_literal_names_key(tmp_path):
    path = write(tmp_path, MINIMAL + '\n[generator]\nbackend = "gpt"\n')
    assert "`generator.backend`" in config_error(path)


def test_invalid_toml_names_file(tmp_path):
    path = write(tmp_path, MINIMAL + "\n[train\nepochs = 2\n")
    msg = config_error(path)
    assert str(path) in msg
    assert "invalid TOML" in msg


def test_missing_file_is_config_error(tmp_path):
    path = tmp_path / "nope.toml"
    assert str(path) in config_error(path)


# ---------------------------------------------------------------------------------------------- --set

def test_overrides_set_values_with_types(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + "\n[train]\nepochs = 5\n"),
                      ["train.epochs=1", 'generator.backend="fake"', "generator.model=tiny", "train.lr = 0.01"])
    assert cfg.train.epochs == 1
    assert cfg.generator.backend == "fake"
    assert cfg.generator.model == "tiny"  # not valid TOML/JSON: kept as a string
    assert cfg.train.lr == 0.01


def test_override_creates_missing_section(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL), ["queries.per_mode=7"])
    assert cfg.queries.per_mode == 7


def test_override_list_value(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL), ['train.target_modules=["q_proj", "k_proj"]'])
    assert cfg.train.target_modules == ["q_proj", "k_proj"]


def test_override_with_unknown_key_is_rejected(tmp_path):
    path = write(tmp_path, MINIMAL)
    assert "unknown key `train.foo`" in config_error(path, ["train.foo.bar=1"])
    assert "unknown key `train.epoch`" in config_error(path, ["train.epoch=1"])


def test_override_with_wrong_type_is_rejected(tmp_path):
    assert "`train.epochs`" in config_error(write(tmp_path, MINIMAL), ["train.epochs=many"])


def test_override_without_equals_is_an_error(tmp_path):
    msg = config_error(write(tmp_path, MINIMAL), ["train.epochs"])
    assert "KEY=VALUE" in msg and "train.epochs" in msg


def test_override_through_a_non_table_is_an_error(tmp_path):
    msg = config_error(write(tmp_path, MINIMAL + "\n[train]\nepochs = 2\n"), ["train.epochs.x=1"])
    assert "train.epochs.x" in msg


# ---------------------------------------------------------------------------------------- relative paths

def test_relative_paths_resolve_against_config_folder(tmp_path, monkeypatch):
    conf_dir = tmp_path / "configs"
    path = write(conf_dir, MINIMAL + """
demonstrations = "demos.jsonl"
evaluation = [{path = "eval/inputs.jsonl", label_field = "label"}, {path = "/abs/e.jsonl"}]

[run]
dir = "runs/one"

[search]
corpus = ["corpus", "more/notes.md"]
index_dir = "idx"

[predict]
inputs = ["inputs.jsonl"]
""")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where the command runs must not matter
    cfg = load_config(path)
    base = conf_dir.resolve()
    assert cfg.run.dir == base / "runs/one"
    assert cfg.search.corpus == [base / "corpus", base / "more/notes.md"]
    assert cfg.search.index_dir == base / "idx"
    task = cfg.task("hate")
    assert [d.path for d in task.demonstrations] == [base / "demos.jsonl"]
    assert [d.path for d in task.evaluation] == [base / "eval/inputs.jsonl", Path("/abs/e.jsonl")]
    assert task.evaluation[0].label_field == "label"
    assert [d.path for d in cfg.predict.inputs] == [base / "inputs.jsonl"]


def test_demonstrations_as_list_of_strings_and_tables(tmp_path):
    path = write(tmp_path, MINIMAL + 'demonstrations = ["a.txt", {path = "b.csv", text_field = "tweet"}]\n')
    demos = load_config(path).task("hate").demonstrations
    assert [d.path for d in demos] == [tmp_path.resolve() / "a.txt", tmp_path.resolve() / "b.csv"]
    assert [d.text_field for d in demos] == ["text", "tweet"]


def test_demonstrations_as_array_of_tables(tmp_path):
    path = write(tmp_path, MINIMAL + '\n[[tasks.demonstrations]]\npath = "d/x.jsonl"\nculture = "Spanish"\n')
    demos = load_config(path).task("hate").demonstrations
    assert demos[0].path == tmp_path.resolve() / "d/x.jsonl"
    assert demos[0].culture == "Spanish"


def test_absolute_run_dir_is_kept(tmp_path):
    target = tmp_path / "elsewhere" / "run"
    cfg = load_config(write(tmp_path / "c", MINIMAL + f'\n[run]\ndir = "{target.as_posix()}"\n'))
    assert cfg.run.dir == target


def test_a_finished_runs_config_json_loads_through_the_same_loader(tmp_path):
    """`serve RUN_DIR` reads the run's resolved config.json (config.load_run_config) as a config file is read:
    the same --set overrides and checks with errors naming the file and key; run.dir is the folder given."""
    from culturemanager.config import dump_config, load_run_config
    from culturemanager.errors import MissingStageInput

    cfg = load_config(write(tmp_path, MINIMAL + "\n[train]\nepochs = 1\n"))
    run = tmp_path / "copied" / "run"
    resolved = dump_config(cfg) | {"run": {"dir": ".", "seed": 0}}  # as pipeline.Run writes it
    write(run, json.dumps(resolved), "config.json")
    back = load_run_config(run, ["train.rank=2"])
    assert back.run.dir == run.resolve() and (back.train.epochs, back.train.rank) == (1, 2)
    assert dump_config(back) == {**dump_config(cfg), "run": {"dir": str(run.resolve()), "seed": 0},
                                 "train": {**dump_config(cfg)["train"], "rank": 2}}
    with pytest.raises(ConfigError, match=r"config.json: invalid config\n  `train.rank`"):
        load_run_config(run, ["train.rank=0"])
    write(run, json.dumps({**resolved, "extra": 1}), "config.json")
    with pytest.raises(ConfigError, match="unknown key `extra`"):
        load_run_config(run)
    with pytest.raises(MissingStageInput, match="config.json not found"):
        load_run_config(tmp_path / "empty")


# ---------------------------------------------------------------------------------------- cross checks

def test_task_with_unknown_culture_is_an_error(tmp_path):
    msg = config_error(write(tmp_path, MINIMAL + 'cultures = ["Spanish", "Klingon"]\n'))
    assert "Klingon" in msg


def test_task_cultures_subset(tmp_path):
    text = MINIMAL + 'cultures = ["Turkish"]\n' + '\n[[cultures]]\nname = "Turkish"\n'
    cfg = load_config(write(tmp_path, text))
    assert [c.name for c in cfg.task_cultures(cfg.task("hate"))] == ["Turkish"]


def test_duplicate_culture_names_are_an_error(tmp_path):
    msg = config_error(write(tmp_path, MINIMAL + '\n[[cultures]]\nname = "Spanish"\n'))
    assert "`cultures`" in msg and "unique" in msg


def test_culture_named_others_is_an_error(tmp_path):
    assert "Others" in config_error(write(tmp_path, MINIMAL + '\n[[cultures]]\nname = "Others"\n'))


def test_empty_cultures_is_an_error(tmp_path):
    msg = config_error(write(tmp_path, 'cultures = []\n[[tasks]]\nid = "t"\nlabel = "x"\n'))
    assert "`cultures`" in msg


def test_duplicate_task_ids_are_an_error(tmp_path):
    msg = config_error(write(tmp_path, MINIMAL + '\n[[tasks]]\nid = "hate"\nlabel = "other"\n'))
    assert "unique" in msg and "hate" in msg


def test_multiple_choice_without_labels_is_an_error(tmp_path):
    msg = config_error(write(tmp_path, MINIMAL + 'format = "multiple_choice"\n'))
    assert "tasks.0" in msg and "labels" in msg


def test_multiple_choice_with_labels_loads(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + 'format = "multiple_choice"\nlabels = ["A", "B", "C"]\n'))
    task = cfg.task("hate")
    assert task.labels == ["A", "B", "C"]
    assert task.positive_label is None
    assert "{options}" in task.template


def test_positive_label_not_in_labels_is_an_error(tmp_path):
    msg = config_error(write(tmp_path, MINIMAL + 'positive_label = "yes"\n'))
    assert "tasks.0" in msg and "'yes'" in msg


def test_template_without_input_is_an_error(tmp_path):
    msg = config_error(write(tmp_path, MINIMAL + 'template = "Is this {task}?"\n'))
    assert "{input}" in msg


def test_predict_task_must_be_a_task_id(tmp_path):
    assert "predict.task" in config_error(write(tmp_path, MINIMAL + '\n[predict]\ntask = "spam"\n'))


# ------------------------------------------------------------------------------------------ models, ranges

def test_relative_model_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    conf_dir = tmp_path / "configs"
    (conf_dir / "models" / "tiny").mkdir(parents=True)
    path = write(conf_dir, MINIMAL + '\n[target]\nmodel = "models/tiny"\n[generator]\nmodel = "./gen.gguf"\n')
    monkeypatch.chdir(tmp_path)  # "models/tiny" does not exist here, only next to the config
    cfg = load_config(path, ["generator.backend=fake"])
    assert cfg.target.model == str(conf_dir.resolve() / "models" / "tiny")
    assert cfg.generator.model == str(conf_dir.resolve() / "gen.gguf")  # path-like though missing: named in full
    # hub ids and packaged short names stay as they are
    cfg = load_config(path, ["target.model=google/gemma-3-270m", "generator.model=gemma3-270m"])
    assert (cfg.target.model, cfg.generator.model) == ("google/gemma-3-270m", "gemma3-270m")


@pytest.mark.parametrize("setting, key", [
    ("train.lr=0", "train.lr"), ("train.dropout=1.0", "train.dropout"), ("generator.temperature=-0.1",
                                                                          "generator.temperature"),
    ("target.max_length=4", "target.max_length"), ("search.top_k=0", "search.top_k"),
    ("search.web.results=0", "search.web.results"), ("run.seed=-1", "run.seed"),
    ("train.target_modules=[]", "train.target_modules"), ("generator.concurrency=0", "generator.concurrency"),
])
def test_out_of_range_values_are_errors_naming_the_key(tmp_path, setting, key):
    path = write(tmp_path, MINIMAL)
    msg = config_error(path, [setting])
    assert f"`{key}`" in msg and str(path) in msg


def test_datafile_ranges_and_format(tmp_path):
    assert "`tasks.0.demonstrations.0.start`" in config_error(
        write(tmp_path, MINIMAL + 'demonstrations = [{path = "d.txt", start = -1}]\n'))
    assert "`tasks.0.demonstrations.0.format`" in config_error(
        write(tmp_path, MINIMAL + 'demonstrations = [{path = "d.txt", format = "parquet"}]\n'))
    cfg = load_config(write(tmp_path, MINIMAL + 'demonstrations = [{path = "d.tsv", format = "text"}]\n'))
    assert cfg.task("hate").demonstrations[0].format == "text"


def test_the_example_configs_are_valid(monkeypatch):
    monkeypatch.setenv("CULTUREMANAGER_DATA", "/data")
    root = Path(__file__).resolve().parents[1] / "examples"
    for name in ("demo.toml", "culturellm.toml"):
        load_config(root / name)


# ------------------------------------------------------------------------------------------ the reference

def test_every_config_field_has_a_docstring():
    from pydantic import BaseModel

    from culturemanager.config import Config
    from culturemanager.config.doc import section_of

    def leaves(model: type[BaseModel], prefix: str = ""):
        for name, f in model.model_fields.items():
            yield prefix + name, f
            if (sub := section_of(f.annotation)) is not None:
                yield from leaves(sub[0], prefix + name + ".")

    fields = dict(leaves(Config))
    assert len(fields) > 100
    assert [k for k, f in fields.items() if not (f.description or "").strip()] == []


def test_the_bench_config_is_the_run_configs_tables_plus_its_own_and_explain_documents_both():
    """The bench's generator ... router are the run config's own fields (not a copy that could drift), and
    `config --explain` documents the bench's own table, every field with a docstring."""
    from culturemanager.bench.config import BenchConfig, BenchTable
    from culturemanager.config import PIPELINE_TABLES, Config
    from culturemanager.config.doc import explain, field_lines

    assert list(BenchConfig.model_fields) == ["bench", *PIPELINE_TABLES]
    for name in PIPELINE_TABLES:
        ours, run = BenchConfig.model_fields[name], Config.model_fields[name]
        assert (ours.annotation, ours.default_factory, ours.description) == \
               (run.annotation, run.default_factory, run.description)
    doc = explain()
    bench = [x for x in field_lines(BenchTable, "", None) if not x.startswith("    ")]
    assert "bench.tasks: path (required)" in bench and "bench.cultures[].country: str | none" in "\n".join(bench)
    assert all(x in doc.splitlines() for x in bench)
    lines = doc.splitlines()
    undocumented = [x for i, x in enumerate(lines) if not x.startswith("    ")
                    and (i + 1 == len(lines) or not lines[i + 1].startswith("    "))]
    assert undocumented == []


def test_config_explain_prints_every_field_with_type_default_and_docstring(capsys):
    from culturemanager.cli import main

    assert main(["config", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "train.epochs: int (>= 1, <= 10000) = 3\n    Passes over a culture's samples." in out
    assert 'generator.backend: "local" | "openai" | "llama_server" | "fake" = "local"' in out
    assert "tasks[].demonstrations[].format:" in out and "cultures[].name: str (required)" in out
    lines = [x for x in out.splitlines() if not x.startswith("    ")]
    assert len(lines) > 100 and all(":" in x for x in lines)


def test_config_explain_with_a_file_shows_its_values_and_plain_config_prints_json(tmp_path, capsys):
    from culturemanager.cli import main

    path = write(tmp_path, MINIMAL + "\n[train]\nepochs = 1\n")
    assert main(["config", str(path), "--explain"]) == 0
    assert "train.epochs: int (>= 1, <= 10000) = 3; here: 1" in capsys.readouterr().out
    assert main(["config", str(path), "--set", "train.rank=2"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["train"] == {**resolved["train"], "epochs": 1, "rank": 2}
    assert main(["config", str(path), "--set", "train.rank=0"]) == 2
