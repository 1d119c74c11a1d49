"""Config values no run can mean are errors at load, naming the key and the file (exit 2), before anything runs:
counts, sizes, timeouts and retries past their (generous, documented) upper bounds, non-finite floats anywhere in
the config, and a culture's `language` that is not an ISO 639-1 code.

Run: .venv/bin/python -m pytest tests/test_config_bounds.py -q
"""

from __future__ import annotations

import pytest
from conftest import write_task

from culturemanager.cli import main
from culturemanager.config import Config
from culturemanager.errors import EXIT_CONFIG

BAD = [
    ("queries.per_mode", "99999999999999999999"),
    ("queries.max_attempts", "1000000"),
    ("generator.timeout_s", "1e308"),
    ("generator.max_retries", "1000000"),
    ("generator.concurrency", "100000000"),
    ("generator.max_new_tokens", "10000000000"),
    ("generator.server.request_timeout_s", "1e12"),
    ("search.web.timeout_s", "1e308"),
    ("search.web.max_retries", "1000000"),
    ("search.fetch.read_timeout_s", "1e308"),
    ("search.fetch.max_bytes", "1000000000000000"),
    ("search.top_k", "10000000"),
    ("synthesis.samples_per_material", "100000000"),
    ("synthesis.max_attempts", "1000000"),
    ("target.max_length", "1000000000000"),
    ("target.batch_size", "100000000"),
    ("train.epochs", "1000000000"),
    ("train.max_steps", "1000000000000"),
    ("train.rank", "1000000"),
    ("predict.max_new_tokens", "10000000000"),
    ("predict.inputs.0.limit", "1000000000000"),
    ("run.seed", "100000000000000000000"),
    ("train.lr", "inf"),
    ("train.lr", "nan"),
    ("train.dropout", "nan"),
    ("generator.temperature", "-inf"),
    ("synthesis.select.near_duplicate", "nan"),
    ("router.keep", "nan"),
    ("serve.max_wait_ms", "nan"),
    ("cultures.0.language", '"turkish!!"'),
    ("cultures.0.language", '"ES"'),
    ("cultures.0.language", '"spa"'),
    ("cultures.0.country", '"Spain"'),
]


@pytest.mark.parametrize("key, value", BAD, ids=[f"{k}={v}" for k, v in BAD])
def test_a_value_out_of_bounds_or_not_finite_is_a_config_error_naming_key_and_file(tmp_path, tiny_model, capsys,
                                                                                   key, value):
    cfg = write_task(tmp_path, tiny_model)
    assert main(["run", str(cfg), "--set", f"{key}={value}", "--check"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"`{key}`" in err and str(cfg) in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_non_finite_float_written_in_the_file_is_an_error_too(tmp_path, tiny_model, capsys):
    cfg = write_task(tmp_path, tiny_model)
    cfg.write_text(cfg.read_text().replace("epochs = 1\n", "epochs = 1\nlr = inf\nwarmup = nan\n"))
    assert main(["run", str(cfg), "--check"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "`train.lr`" in err and "`train.warmup`" in err and "finite" in err and str(cfg) in err


def test_the_bench_configs_rates_must_be_finite(tmp_path, tiny_model, capsys):
    from test_bench import write_bench

    cfg = write_bench(tmp_path, tiny_model)
    assert main(["bench", str(cfg), "--set", "bench.rates.output_token_s=inf", "--plan"]) == EXIT_CONFIG
    assert "`bench.rates.output_token_s`" in capsys.readouterr().err
    assert main(["bench", str(cfg), "--set", "bench.demo_share=1.5", "--plan"]) == EXIT_CONFIG
    assert "`bench.demo_share`" in capsys.readouterr().err


def test_the_bounds_are_generous_and_documented():
    """`config --explain` shows each bound, and the bounds themselves are allowed."""
    from culturemanager.config.doc import explain

    text = explain(None)
    for line in ("queries.per_mode: int (>= 1, <= 1000) = 3", "generator.timeout_s: float (> 0, <= 86400) = 120.0",
                 "generator.max_retries: int (>= 0, <= 100) = 4",
                 "cultures[].language: str | none (matching ^[a-z]{2}$) = null"):
        assert line in text
    raw = {"cultures": [{"name": "Spanish", "language": "es", "country": "ES"}], "tasks": [{"id": "t", "label": "x"}],
           "queries": {"per_mode": 1000}, "generator": {"max_retries": 100, "timeout_s": 86400}}
    Config.model_validate(raw)


def test_a_bench_tasks_language_must_be_an_iso_639_1_code(tmp_path, tiny_model, capsys):
    import json

    from test_bench import write_bench

    cfg = write_bench(tmp_path, tiny_model)
    tasks = json.loads((tmp_path / "data" / "tasks.json").read_text())
    tasks["tasks"][1]["language"] = "Turkish"
    (tmp_path / "data" / "tasks.json").write_text(json.dumps(tasks))
    assert main(["bench", str(cfg), "--check"]) == 3  # the tasks file is an input of the bench, not its config
    err = capsys.readouterr().err
    assert "task 'tr-abusive'" in err and "`tasks.1.language`" in err and "tasks.json" in err
