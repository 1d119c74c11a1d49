"""The server: one OpenAI-compatible endpoint over a finished run that routes every request to its culture's
adapter, batches requests of every culture together, and can front a vLLM server for generation.

    service.py    the run served (config, router, adapters) and the model names clients use for it
    app.py        the endpoints (FastAPI): completions, chat, models, classify, health, metrics
    batcher.py    dynamic batching: one worker thread owns the model, mixed-adapter batches
    schemas.py    what a request may say, validated against the [serve] bounds
    openai_api.py the OpenAI wire format, as pure functions
    upstream.py   forwarding to vLLM / LoRAX, and the `vllm serve` line for the run's adapters
    metrics.py    Prometheus metrics

Needs the `serve` extra (fastapi, uvicorn, prometheus-client); the CLI imports this package only for `serve`.

Entry point: `serve(path, overrides, print_vllm=False)`.
Run: `culturemanager serve runs/demo` (then `curl localhost:8000/v1/models`), or
`culturemanager serve runs/demo --print-vllm-command`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from culturemanager.serve.service import Service, adapter_rank, bind, load_run, run_until_stopped, uvicorn_server

log = logging.getLogger("culturemanager.serve")


def serve(path: Path, overrides: list[str] | tuple[str, ...] = (), print_vllm: bool = False) -> int:
    """Serve the run at `path` (a run directory or its config file) until SIGTERM or Ctrl-C; with `print_vllm`,
    print the `vllm serve` line for its adapters instead."""
    cfg, router = load_run(Path(path), overrides)
    svc = Service(cfg, router)
    if print_vllm:
        print(vllm_line(svc))
        return 0
    from culturemanager.serve.app import api_key, create_app

    s = cfg.serve
    api_key(s.api_key_env)  # a missing key is a config error before the model loads
    if s.host not in ("127.0.0.1", "localhost", "::1") and s.api_key_env is None:
        log.warning("serving on %s without an API key (serve.api_key_env): anyone who reaches it can use it", s.host)
    logging.getLogger("culturemanager.serve").setLevel(logging.INFO)
    svc.load_engine()
    app = create_app(svc)
    sock = bind(s.host, s.port)
    host, port = sock.getsockname()[:2]
    print(f"culturemanager serve: {svc.base} with {', '.join(svc.cultures) or 'no cultures'} on "
          f"http://{host}:{port}/v1" + (f", generation upstream at {s.upstream}" if s.upstream else ""),
          file=sys.stderr, flush=True)
    run_until_stopped(uvicorn_server(app, s.shutdown_grace_s), sock)
    print("culturemanager serve: stopped (requests in flight were answered)", file=sys.stderr)
    return 0


def vllm_line(svc: Service) -> str:
    from culturemanager.backends.models import resolve_hf
    from culturemanager.serve.upstream import vllm_command

    adapters = {c: p for c, p in svc.cultures.items() if p}
    rank = max((adapter_rank(p) for p in adapters.values()), default=8)
    return vllm_command(resolve_hf(svc.cfg.target.model)[0], svc.base, adapters, rank)
