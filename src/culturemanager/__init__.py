"""culturemanager: task-aware culture management for language models.

Python API (mirrors the CLI):

    from culturemanager import load_config, run
    cfg = load_config("examples/demo.toml", ["train.epochs=1"])
    run(cfg)                      # all stages; or run(cfg, ["queries", "search"])
"""

from culturemanager.config import Config, ConfigError, load_config
from culturemanager.pipeline import Run, run

__all__ = ["Config", "ConfigError", "Run", "load_config", "run"]
__version__ = "0.1.0"
