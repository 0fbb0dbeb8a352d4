"""`.venv/bin/python bench/serve_load.py [--clients 8] [--seconds 60]`: gateway under load vs the backend directly.

Loopback only. Builds a tiny model, serves it with uvicorn on 127.0.0.1 (free port), runs N concurrent *streaming*
OpenAI-client chats for a bounded time, then the same N threads calling the batched backend directly (no HTTP, no auth,
no guard, no audit) for the same time. Checks: zero errors, audit verify passes, audit record count == request count.
Prints p50/p99 latency, throughput and the gateway/backend ratio.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "국방 정보 보안 규정에 따라 비밀 문서를 어떻게 관리해야 하는가?"


def build_model(tmp: Path) -> Path:
    from sovforge.model.base import init_base
    from sovforge.model.config import BaseConfig

    text = tmp / "text"
    text.mkdir()
    (text / "t.txt").write_text((ROOT / "README.md").read_text(encoding="utf-8") + "\n" + PROMPT * 20, encoding="utf-8")
    return init_base(BaseConfig(text=[text], preset="tiny", vocab_size=512, pretrain_steps=0, seq_len=32,
                                max_position_embeddings=512), tmp / "model")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def drive(clients: int, seconds: float, call) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                call()
            except Exception as exc:  # counted, shown once
                with lock:
                    errors[0] += 1
                    if errors[0] == 1:
                        print("error:", repr(exc), file=sys.stderr)
                continue
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    import os

    import uvicorn
    from openai import OpenAI

    from sovforge.serve.app import create_app
    from sovforge.serve.backend import Job
    from sovforge.serve.config import ServeConfig

    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    os.environ["SOVFORGE_HOME"] = str(tmp / "home")
    model = build_model(tmp)
    cfg = ServeConfig(model=model, state_dir=tmp / "state", force_unpromoted=True, requests_per_minute=10**6,
                      tokens_per_day=10**9, max_concurrent=args.clients, max_batch_size=args.clients)
    app = create_app(cfg)
    key = app.state.store.create_key("bench")[1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
    messages = [{"role": "user", "content": PROMPT}]

    def via_gateway() -> None:
        stream = client.chat.completions.create(model=app.state.model_id, messages=messages, stream=True,
                                                max_tokens=args.max_tokens, temperature=0)
        if not any(chunk.choices and chunk.choices[0].finish_reason for chunk in stream):
            raise RuntimeError("stream ended without finish_reason")

    before = app.state.store.count()
    gw_lat, gw_err = drive(args.clients, args.seconds, via_gateway)
    backend = app.state.serving["backend"]
    ids = backend.chat_prompt(messages)

    def direct() -> None:
        for _ in backend.submit(Job(list(ids), args.max_tokens, 0.0)):
            pass

    be_lat, be_err = drive(args.clients, args.seconds, direct)
    server.should_exit = True
    thread.join(timeout=60)
    store = app.state.store
    records = store.count() - before
    problems = store.verify()
    gw_rps, be_rps = len(gw_lat) / args.seconds, len(be_lat) / args.seconds
    print(f"clients={args.clients} seconds={args.seconds:g} max_tokens={args.max_tokens} (2-core CPU, tiny model)")
    print(f"{'path':<10}{'requests':>10}{'errors':>8}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>9}")
    for name, lat, err, rps in (("gateway", gw_lat, gw_err, gw_rps), ("backend", be_lat, be_err, be_rps)):
        print(f"{name:<10}{len(lat):>10}{err:>8}{1000 * percentile(lat, .5):>10.1f}"
              f"{1000 * percentile(lat, .99):>10.1f}{rps:>9.2f}")
    print(f"gateway/backend throughput ratio {gw_rps / be_rps:.2f}; p50 overhead "
          f"{1000 * (percentile(gw_lat, .5) - percentile(be_lat, .5)):.1f} ms")
    print(f"audit records {records} == gateway requests {len(gw_lat) + gw_err}: {records == len(gw_lat) + gw_err}; "
          f"audit verify: {'OK' if not problems else problems[:3]}")
    ok = gw_err == 0 and be_err == 0 and not problems and records == len(gw_lat)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
