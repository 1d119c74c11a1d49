"""An adapter's training checkpoint: weights, optimizer, scheduler, step and early-stopping state in
`.<adapter>.checkpoint/state.pt` beside the adapter, so that a killed training resumes where it stopped.

A kill can come at any instant, so the new checkpoint is written beside the old one, flushed to disk (fsync), and
only then renamed over it (`os.replace`, atomic: the old one is deleted by that rename, never before it); the
folder is fsynced so the rename itself survives a power cut. At every moment the folder holds the old
checkpoint or the new one, whole. (Before, the old checkpoint was deleted first, and a kill between the delete
and the rename lost both.)

Run: imported by backends/trainer.py; no entry point of its own.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from pathlib import Path

import torch

log = logging.getLogger(__name__)

STATE = "state.pt"


def new_state() -> dict:
    return {"step": 0, "losses": [], "val_curve": [], "best_loss": None, "best_step": None, "best": None, "bad": 0,
            "stopped": False}


def save_checkpoint(folder: Path, digest: str, state: dict, weights: dict, opt, sched) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (STATE + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({**state, "weights": weights, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "data_hash": digest}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / STATE)
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(folder: Path, digest: str, model, opt, sched, set_state) -> dict:
    """The training state of a killed run with the same data hash, loaded into model, optimizer and scheduler;
    a fresh state otherwise (also for a checkpoint that cannot be read: it only ever saves time)."""
    state_file = folder / STATE
    if not state_file.exists():
        return new_state()
    try:
        saved = torch.load(state_file, weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as e:
        log.warning("%s cannot be read (%s): training from the start", state_file, e)
        shutil.rmtree(folder, ignore_errors=True)
        return new_state()
    if saved.get("data_hash") != digest:
        shutil.rmtree(folder, ignore_errors=True)
        return new_state()
    set_state(model, saved.pop("weights"))
    opt.load_state_dict(saved.pop("optimizer"))
    sched.load_state_dict(saved.pop("scheduler"))
    saved.pop("data_hash")
    log.info("resuming training from step %d", saved["step"])
    return {**new_state(), **saved}
