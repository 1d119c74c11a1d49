"""The benchmark's methods: the table of rows, the adapters each needs, and which model variant answers each task.

A *job* is one adapter to train (kind, culture or task, seed). A *variant* is what answers a task: "base" (the
target model), "prompt" (the base model behind the anthropological preamble), "probe" (a linear read-out, not a
language model answer) or a trained job's adapter (its slug). Every method is a pure function of variants' answers:
`method_variants` says which, and CultureManager with its router takes, per input, the answer of the variant of
the culture it was routed to.

Run: imported by the bench's phases (bench/prepare.py, train.py, evaluate.py, assemble.py); no entry point of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from culturemanager.config import SmallLossConfig, TrainConfig
from culturemanager.rundir import safe_name

BASELINE, CM_GROUP, ABLATION, REFERENCE = "baseline", "culturemanager", "ablation", "reference"
METHODS: dict[str, tuple[str, str]] = {  # name -> (group, description)
    "Original": (BASELINE, "the target model as is"),
    "Prompt": (BASELINE, "anthropological prompting: answer as a person of the task's culture"),
    "TaskSFT": (BASELINE, "LoRA per task on its demonstrations with their labels"),
    "CultureSFT": (BASELINE, "LoRA per culture on its World Values Survey answers (50 questions)"),
    "CultureSFT-all": (BASELINE, "one LoRA on every culture's survey answers"),
    "CultureLLM": (BASELINE, "LoRA per culture on CultureLLM's augmented survey data (1000 sets)"),
    "CultureLLM-all": (BASELINE, "one LoRA on all cultures' augmented survey data"),
    "CultureManager": (CM_GROUP, "per-culture adapters on synthetic task data, the router (router.kind) picks per "
                                 "input"),
    "CultureManager (embedding router)": (CM_GROUP, "the same adapters, routed by the embedding router"),
    "CultureManager (prompt router)": (CM_GROUP, "the same adapters, routed by the prompt router (the paper's "
                                                 "design; router.template, router.calibrate)"),
    "CultureManager (top-2 mix)": (CM_GROUP, "the same adapters, the router's two likeliest routes answering "
                                             "together: their P(positive) weighted by the router's probabilities"),
    "CultureManager (known culture)": (CM_GROUP, "the same adapters, the task's culture given"),
    "CultureSFT -> CultureManager": (CM_GROUP, "the culture's CultureSFT adapter trained further on its synthetic "
                                               "task data (the paper's two-stage variant), culture given"),
    "CultureManager-all": (ABLATION, "one adapter on all cultures' synthetic data (no culture management)"),
    "CultureManager task-specific only": (ABLATION, "adapters on samples from task-specific queries, culture given"),
    "CultureManager task-agnostic only": (ABLATION, "adapters on samples from task-agnostic queries, culture given"),
    "CultureManager (no label check)": (ABLATION, "the known-culture adapters trained on every kept sample, without "
                                                  "the small-loss check (train.small_loss)"),
    "CultureManager (no selection)": (ABLATION, "the known-culture adapters trained on the samples before selection "
                                                "by culture (synthesis.select)"),
    "Probe (linear)": (REFERENCE, "logistic regression on the frozen model's mean hidden state, trained on "
                                  "TaskSFT's labelled demonstrations: what a linear read-out of these features "
                                  "reaches"),
}
UNTRAINED = {"Original", "Prompt", "Probe (linear)"}
TRAINED = {m for m in METHODS if m not in UNTRAINED}
CM_METHODS = {m for m in METHODS if m.startswith("CultureManager") or "-> CultureManager" in m}
FIXED_VARIANT = {"Original": "base", "Prompt": "prompt", "Probe (linear)": "probe"}
# the routed methods: method -> (router kind, None for router.kind; how many routes answer together)
ROUTED: dict[str, tuple[str | None, int]] = {
    "CultureManager": (None, 1), "CultureManager (embedding router)": ("embedding", 1),
    "CultureManager (prompt router)": ("prompt", 1), "CultureManager (top-2 mix)": (None, 2)}
SURVEY_KINDS = {"culturesft", "culturellm", "culturesft-all", "culturellm-all"}
# methods a scoring family (bench/score.py FAMILIES) has no meaning for: the probe reads out P(positive) of two
# labels; free-text answers cannot be mixed
NOT_APPLICABLE: dict[str, set[str]] = {"labels": set(), "options": {"Probe (linear)"},
                                       "free_text": {"Probe (linear)", "CultureManager (top-2 mix)"}}

# method -> (job kind, per culture / per task / one for all); the adapter that answers a task of culture c
_JOB_OF: dict[str, tuple[str, str]] = {
    "TaskSFT": ("tasksft", "task"), "CultureSFT": ("culturesft", "culture"),
    "CultureSFT-all": ("culturesft-all", "all"), "CultureLLM": ("culturellm", "culture"),
    "CultureLLM-all": ("culturellm-all", "all"), **{m: ("cm", "culture") for m in ROUTED},
    "CultureManager (known culture)": ("cm", "culture"), "CultureSFT -> CultureManager": ("cm-2s", "culture"),
    "CultureManager-all": ("cm-all", "all"), "CultureManager task-specific only": ("cm-ts", "culture"),
    "CultureManager task-agnostic only": ("cm-ta", "culture"),
    "CultureManager (no label check)": ("cm-nolc", "culture"), "CultureManager (no selection)": ("cm-nosel", "culture"),
}
# an ablation row has no meaning when the check it removes is off: method -> the setting that must be on
NEEDS_CHECK = {"CultureManager (no label check)": "train.small_loss.enabled",
               "CultureManager (no selection)": "synthesis.select.enabled"}


def with_checks_on(methods: list[str], cfg) -> list[str]:
    """`methods` without the ablation rows whose check is off in `cfg` (NEEDS_CHECK): such a row would train the
    same adapters as the row it is compared with."""
    def on(path: str) -> bool:
        value = cfg
        for part in path.split("."):
            value = getattr(value, part)
        return bool(value)

    return [m for m in methods if m not in NEEDS_CHECK or on(NEEDS_CHECK[m])]


@dataclass(frozen=True)
class Job:
    """One adapter to train: kind (tasksft, culturesft, culturellm, cm, cm-ts, cm-ta, cm-2s, cm-nolc, cm-nosel,
    *-all), name, seed."""
    kind: str
    name: str
    seed: int

    @property
    def slug(self) -> str:  # a valid peft adapter name
        return safe_name(f"{self.kind}_{self.name}_s{self.seed}")

    def folder(self, root: Path) -> Path:
        return root / "adapters" / self.kind / safe_name(self.name) / f"seed{self.seed}"

    @property
    def init(self) -> Job | None:
        """The adapter this one continues from (the two-stage variant starts from CultureSFT)."""
        return Job("culturesft", self.name, self.seed) if self.kind == "cm-2s" else None


def job_settings(job: Job, train: TrainConfig, survey_train: dict) -> TrainConfig:
    """A job's [train] settings: `bench.survey_train` on top for the survey baselines (their answers are 1-10
    ratings: no class balancing by default); the small-loss check only on synthetic data, and not for the
    no-label-check ablation."""
    if job.kind in SURVEY_KINDS and survey_train:
        return train.model_copy(update={**survey_train, "small_loss": SmallLossConfig()})
    if not job.kind.startswith("cm") or job.kind == "cm-nolc":
        return train.model_copy(update={"small_loss": SmallLossConfig()})
    return train


def job_for(method: str, task_id: str, culture: str, seed: int) -> Job | None:
    """The adapter that answers `task_id` (of `culture`) for a trained method (None for untrained methods)."""
    if method not in _JOB_OF:
        return None
    kind, per = _JOB_OF[method]
    return Job(kind, {"task": task_id, "culture": culture, "all": "all"}[per], seed)


def answering(method: str, task_id: str, culture: str, seed: int, cultures: list[str]) -> list[Job | str]:
    """What answers a task's test inputs for a method: adapter jobs, or a fixed variant of the base model
    ("base", "prompt", "probe"). A routed method may send any input to any culture's adapter or to the base
    model ("Others"), so it needs all of them."""
    if method in ROUTED:
        return ["base", *(Job("cm", c, seed) for c in cultures)]
    job = job_for(method, task_id, culture, seed)
    return [job] if job is not None else [FIXED_VARIANT[method]]


def jobs(methods: set[str], task_ids: list[str], cultures: list[str], seeds: list[int]) -> list[Job]:
    """Every adapter the methods need, each once, in training order (an adapter another continues from first).
    CultureManager with its router needs every culture's adapter (it also answers other cultures' tasks)."""
    out: list[Job] = []
    for seed in seeds:
        for method in (m for m in METHODS if m in methods):
            if method not in _JOB_OF:
                continue
            kind, per = _JOB_OF[method]
            names = {"task": task_ids, "culture": cultures, "all": ["all"]}[per]
            for name in names:
                job = Job(kind, name, seed)
                if job.init is not None:
                    out.append(job.init)
                out.append(job)
    return list(dict.fromkeys(out))
