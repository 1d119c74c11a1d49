"""The README's commands, run as a user would, through the real CLI entry point and the Python API: the quick
path (fake generator, tiny model), so that the README cannot rot."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from conftest import REPO, write_task

from culturemanager.cli import main


def readme_blocks(section: str, lang: str) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(rf"```{lang}\n(.*?)```", text[start:end if end > 0 else None], re.S)


def test_the_use_sections_shell_commands_run(tmp_path, tiny_model):
    config = write_task(tmp_path, tiny_model)
    (tmp_path / "new.jsonl").write_text(json.dumps({"text": "Defol git buradan"}) + "\n", encoding="utf-8")
    commands = [line.split("  #")[0].strip() for block in readme_blocks("Use", "bash")
                for line in block.splitlines() if line.startswith("culturemanager ")]
    assert len(commands) >= 5, commands
    for command in commands:
        argv = shlex.split(command.replace("CONFIG.toml", str(config)).replace("new.jsonl",
                                                                               str(tmp_path / "new.jsonl")))
        assert argv[0] == "culturemanager"
        if argv[1] not in ("models", "config"):
            argv.append("--no-progress")
        assert main(argv[1:]) == 0, command
    run_dir = tmp_path / "run"
    assert (run_dir / "predictions.jsonl").exists() and (run_dir / "manifest.json").exists()


def test_the_use_sections_python_api_runs(tmp_path, tiny_model, monkeypatch):
    config = write_task(tmp_path, tiny_model)
    [code] = readme_blocks("Use", "python")
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("examples/demo.toml", str(config)), "README.md", "exec"), {})
    manifest = json.loads((Path(tmp_path) / "run" / "manifest.json").read_text())
    assert set(manifest["stages"]) >= {"queries", "search", "synthesize", "train", "route", "predict"}
