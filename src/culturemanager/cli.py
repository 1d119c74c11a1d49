"""The command line: one subcommand per stage plus `run`, each a thin wrapper over a plain function.

    culturemanager run CONFIG.toml [--set KEY=VALUE ...]      all stages
    culturemanager run CONFIG.toml --check                    only the checks made before the first LLM call
    culturemanager queries|search|synthesize|train|route CONFIG.toml
    culturemanager predict CONFIG.toml [--input FILE --text-field F --label-field F]
    culturemanager config [CONFIG.toml] [--explain]            the resolved config, or every field explained
    culturemanager models [NAME ...]                           list / prepare the packaged models
    culturemanager bench CONFIG.toml [--quick] [--set ...]     the paper's benchmark: every method, one report
                                                              (--check: only the checks made before its LLM calls)
    culturemanager serve RUN_DIR_OR_CONFIG [--port P] [--upstream URL] [--print-vllm-command]
                                                              an OpenAI-compatible server over a finished run

Exit codes (errors.py), the same for every command:
    0    done
    1    a bug (the traceback is printed)
    2    config error: a bad key or value, a model, key or backend that cannot be used; nothing ran
    3    input error: a data file, tasks file or run-directory file missing or malformed (file and line named)
    4    a stage failed: no generator call (or search) gave a usable answer, or a training diverged; earlier
         outputs are kept
    130  interrupted; run the same command again to resume
Errors are one `error: ...` line on stderr; `-v` adds the traceback (and INFO logging).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path

from culturemanager.config import DataFile, load_config
from culturemanager.errors import EXIT_CONFIG, EXIT_INPUT, EXIT_INTERRUPTED, CultureManagerError
from culturemanager.rundir import STAGES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="culturemanager", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", *STAGES):
        p = sub.add_parser(name, help=f"run {'all stages' if name == 'run' else 'the ' + name + ' stage'}")
        p.add_argument("config", type=Path)
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set train.epochs=1")
        p.add_argument("--no-progress", action="store_true")
        if name == "run":
            p.add_argument("--plan", action="store_true", help="print what the run will do and cost, and run nothing")
            p.add_argument("--check", action="store_true", help="check the models and read every input file the "
                           "run will read, by the stages' rules, and run nothing (exit 0, 2 or 3)")
        if name == "train":
            p.add_argument("--shard", metavar="I/N", help="train only the I-th of N shares of the adapters (N "
                           "processes side by side on one run directory; 0-based I)")
        if name == "predict":
            p.add_argument("--input", type=Path, help="predict this file instead of predict.inputs")
            p.add_argument("--text-field", default="text")
            p.add_argument("--label-field")
    b = sub.add_parser("bench", help="the benchmark: every baseline and CultureManager on a tasks file")
    b.add_argument("config", type=Path)
    b.add_argument("--quick", action="store_true", help="apply the config's [bench.quick] overrides")
    b.add_argument("--plan", action="store_true", help="print what the run will do and cost, and run nothing")
    b.add_argument("--check", action="store_true", help="check the models and read every task and survey file the "
                   "bench will read, and run nothing (exit 0, 2 or 3)")
    b.add_argument("--shard", metavar="I/N", help="train only the I-th of N shares of the adapters, then stop (run "
                   "N such processes side by side, then the bench without --shard evaluates everything)")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    b.add_argument("--no-progress", action="store_true")
    m = sub.add_parser("models", help="list the packaged models, or prepare the named ones")
    m.add_argument("names", nargs="*")
    m.add_argument("--for", dest="for_config", type=Path, metavar="CONFIG",
                   help="prepare exactly the models this run or bench config uses, in the form it uses them")
    v = sub.add_parser("serve", help="an OpenAI-compatible server over a finished run (the `serve` extra)")
    v.add_argument("run", type=Path, metavar="RUN_DIR_OR_CONFIG")
    v.add_argument("--host", help="address to bind (serve.host; default 127.0.0.1)")
    v.add_argument("--port", type=int, help="TCP port (serve.port; 0: any free port)")
    v.add_argument("--upstream", metavar="URL", help="forward generation to this vLLM / LoRAX server (serve.upstream)")
    v.add_argument("--api-key-env", metavar="VAR", help="require the bearer key in this environment variable")
    v.add_argument("--print-vllm-command", action="store_true",
                   help="print the `vllm serve` line for this run's adapters, then exit")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. --set serve.max_batch=32")
    c = sub.add_parser("config", help="print the resolved config, or (--explain) every field documented")
    c.add_argument("config", type=Path, nargs="?")
    c.add_argument("--explain", action="store_true", help="every field: type, range, default and docstring")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries(args.verbose)
    try:
        return COMMANDS[args.command if args.command in COMMANDS else "stage"](args)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume (finished calls and adapters are kept)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - only the errors a user can act on are caught, the rest re-raised
        code = exit_code(e)
        if code is None:
            raise  # a bug: its traceback is the report
        if args.verbose:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return code


def exit_code(e: BaseException) -> int | None:
    """The exit code for an error a user can act on (errors.py); None for anything else (a bug)."""
    from culturemanager.backends.llm import BackendError
    from culturemanager.backends.models import ModelNotAvailable
    from culturemanager.backends.retrieval.web import WebSearchError
    from culturemanager.bench.tasks import TasksFileError

    if isinstance(e, CultureManagerError):
        return e.exit_code
    if isinstance(e, (BackendError, ModelNotAvailable, WebSearchError)):
        return EXIT_CONFIG  # the config names a model, key or backend that cannot be used here
    if isinstance(e, (TasksFileError, ValueError, OSError)):
        return EXIT_INPUT  # messages of these name the file (or setting) at fault
    return None


def quiet_libraries(verbose: bool) -> None:
    """Our own progress bars and summary are the output; the libraries' load bars and deprecation notes are
    noise on a terminal (shown with -v)."""
    if verbose:
        return
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*requires_grad.*")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def cmd_run(args) -> int:
    from culturemanager.pipeline import run
    from culturemanager.summary import print_summary

    cfg = load_config(args.config, args.set)
    if args.check:
        from culturemanager.preflight import check_run, render_check

        print(render_check(cfg, check_run(cfg)))
        return 0
    if args.plan:
        from culturemanager.plan import plan_run

        print(plan_run(cfg).render())
        return 0
    run(cfg, progress=not args.no_progress)
    print_summary(cfg.run.dir)
    return 0


def cmd_stage(args) -> int:
    from culturemanager.pipeline import run
    from culturemanager.rundir import shard_of

    shard = shard_of(getattr(args, "shard", None))
    counts = run(load_config(args.config, args.set), [args.command], not args.no_progress, shard)[args.command]
    print(json.dumps(counts, indent=2, ensure_ascii=False))
    return 0


def cmd_config(args) -> int:
    from culturemanager.config import dump_config
    from culturemanager.config.doc import explain

    cfg = load_config(args.config, args.set) if args.config else None
    if args.explain:
        print(explain(cfg))
    elif cfg is not None:
        print(json.dumps(dump_config(cfg), indent=2, ensure_ascii=False))
    else:
        print("error: name a config file, or use --explain for the reference of every field", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def cmd_predict(args) -> int:
    from culturemanager.pipeline import Run
    from culturemanager.preflight import preflight

    cfg = load_config(args.config, args.set)
    files = [DataFile(path=args.input, text_field=args.text_field, label_field=args.label_field)] \
        if args.input else None
    preflight(cfg, ["predict"], files)
    r = Run(cfg, not args.no_progress, predict_files=files)
    metrics = r.stage("predict")  # recorded in the manifest like every stage
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    print(f"predictions: {r.rd.predictions}")
    return 0


def cmd_models(args) -> int:
    from culturemanager.backends.models import PACKAGED, ModelNotAvailable, prepare_for, resolve_hf

    if args.for_config:
        cfg = load_any_config(args.for_config)
        try:
            for role, where in prepare_for(cfg.target, cfg.generator).items():
                print(f"{role}: {where}")
        except ModelNotAvailable as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    for name in args.names or PACKAGED:
        if not args.names:
            print(f"{name:32s} {PACKAGED[name].install}")
            continue
        try:
            print(f"{name}: {resolve_hf(name)[0]}")
        except ModelNotAvailable as e:
            print(f"{name}: {e}", file=sys.stderr)
            return EXIT_CONFIG
    return 0


def cmd_bench(args) -> int:
    from culturemanager.bench.config import load_bench_config
    from culturemanager.bench.run import bench

    cfg = load_bench_config(args.config, args.set, quick=args.quick)
    if args.check:
        from culturemanager.bench.run import check

        counts = check(cfg)
        print("check ok: read " + ", ".join(f"{n} {what}" for what, n in counts.items()))
        return 0
    if args.plan:
        from culturemanager.bench.plan import plan_bench

        print(plan_bench(cfg).render())
        return 0
    command = " ".join(["culturemanager bench", str(args.config)] + (["--quick"] if args.quick else [])
                       + [f"--set {x}" for x in args.set])
    from culturemanager.rundir import shard_of

    shard = shard_of(args.shard)
    results = bench(cfg, progress=not args.no_progress, command=command, quick=args.quick, shard=shard)
    if shard[1] > 1:
        print(f"shard {args.shard}: trained {len(results['trained'])} adapters: {', '.join(results['trained'])}")
        return 0
    from culturemanager.bench.report import summary

    print(summary(results))
    print(f"results: {cfg.bench.dir / 'results.json'}\nreport:  {cfg.bench.dir / 'report.md'}")
    return 0


def cmd_serve(args) -> int:
    from culturemanager.errors import ConfigError

    try:
        from culturemanager.serve import serve
    except ImportError as e:
        raise ConfigError(f"culturemanager serve needs the serve extra ({e.name} is not installed): "
                          f"pip install -e '.[serve]'") from None
    flags = {"host": args.host, "port": args.port, "upstream": args.upstream, "api_key_env": args.api_key_env}
    overrides = [*args.set, *(f"serve.{k}={v}" for k, v in flags.items() if v is not None)]
    return serve(args.run, overrides, print_vllm=args.print_vllm_command)


def load_any_config(path: Path):
    """A run config, or a bench config (one with a [bench] table)."""
    from culturemanager.config.file import read_toml

    if "bench" in read_toml(path):
        from culturemanager.bench.config import load_bench_config

        return load_bench_config(path)
    return load_config(path)


COMMANDS = {"run": cmd_run, "stage": cmd_stage, "predict": cmd_predict, "models": cmd_models, "bench": cmd_bench,
            "config": cmd_config, "serve": cmd_serve}

if __name__ == "__main__":
    sys.exit(main())
