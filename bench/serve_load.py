"""`.venv/bin/python bench/serve_load.py [--clients 8] [--seconds 60] [--rounds 6] [--pin]`: gateway vs the backend directly.

Loopback only, bounded in time and count. Builds a tiny model (a 2-layer model measures only overhead, which is the
point) and serves it with uvicorn on 127.0.0.1 (free port). Then, alternating in rounds so that a noisy shared machine
hits both paths alike:
- gateway: N concurrent streaming chats through HTTP + auth + guard + audit + SSE, with the official `openai` client
  (or `--client httpx`, plain SSE line reading) running in a *separate process* (a client inside the server process
  would steal the server's GIL — in production clients are elsewhere);
- backend: the same N concurrent requests, same prompt, same max_tokens, same batcher (`max_batch_size`, `batch_wait`),
  submitted straight to the backend from threads in the server process (no HTTP, no auth, no guard, no audit).
Both paths generate exactly max_tokens tokens (greedy, `ignore_eos`), so every request does the same work.
torch uses one thread for both paths, leaving the other core to the client process; `--pin` makes that strict (server
process on the first CPU, client process on the rest), so the client cannot take the server's CPU.
Each path first runs with 1 client (the per-request overhead, no batching effects), then with N clients (throughput).
Checks: zero errors, `audit verify` passes, audit record count == gateway request count. Prints p50/p99 latency,
p50 time to the first streamed text, throughput, rows per `generate` call (how well the batcher filled its batches)
and the gateway − backend p50 difference.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
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


def drive(clients: int, seconds: float, call) -> tuple[list[float], list[float], int]:
    """N threads calling `call()` (→ seconds to first text) until the time is up: latencies, first-text times, errors."""
    latencies: list[float] = []
    firsts: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                first = call()
            except Exception as exc:  # counted, shown once
                with lock:
                    errors[0] += 1
                    if errors[0] == 1:
                        print("error:", repr(exc), file=sys.stderr)
                continue
            with lock:
                latencies.append(time.perf_counter() - started)
                firsts.append(first - started)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, firsts, errors[0]


def client_main(args: argparse.Namespace) -> int:
    """The load generator process: N client threads streaming chats; prints one JSON line of results."""
    import httpx
    from openai import OpenAI

    key = os.environ["SOVFORGE_BENCH_KEY"]
    client = OpenAI(base_url=args.client_url, api_key=key, max_retries=0)
    messages = [{"role": "user", "content": PROMPT}]
    raw = httpx.Client(base_url=args.client_url, headers={"Authorization": f"Bearer {key}"}, timeout=120,
                       limits=httpx.Limits(max_connections=args.clients + 2))
    body = {"model": args.model, "messages": messages, "stream": True, "max_tokens": args.max_tokens,
            "temperature": 0, "ignore_eos": True}

    def via_httpx() -> float:
        """SSE read line by line: a light client, so the measurement is the gateway's, not a client library's."""
        first, finished = None, False
        with raw.stream("POST", "/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                        first = time.perf_counter()
                    finished = finished or bool(chunk["choices"] and chunk["choices"][0]["finish_reason"])
        if not finished:
            raise RuntimeError("stream ended without finish_reason")
        return first or time.perf_counter()

    def via_openai() -> float:
        first = None
        finished = False
        for chunk in client.chat.completions.create(model=args.model, messages=messages, stream=True,
                                                    max_tokens=args.max_tokens, temperature=0,
                                                    extra_body={"ignore_eos": True}):
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter()
            finished = finished or bool(chunk.choices and chunk.choices[0].finish_reason)
        if not finished:
            raise RuntimeError("stream ended without finish_reason")
        return first or time.perf_counter()

    client.models.list()  # warm the connection pool outside the measured window
    lat, firsts, errors = drive(args.clients, args.seconds, via_openai if args.client == "openai" else via_httpx)
    print(json.dumps({"latencies": lat, "firsts": firsts, "errors": errors}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per path (N-client phase)")
    parser.add_argument("--rounds", type=int, default=6, help="alternations of gateway and backend")
    parser.add_argument("--single-seconds", type=float, default=None, help="seconds per path with 1 client "
                        "(default: seconds / 3)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--client", choices=("openai", "httpx"), default="openai",
                        help="load generator: the official openai client, or plain httpx reading the SSE lines")
    parser.add_argument("--pin", action="store_true",
                        help="pin the server process to the first CPU and the client process to the others (Linux): "
                             "the load generator then cannot take CPU from the server it measures")
    parser.add_argument("--backend", choices=("transformers", "transformers-process"), default="transformers",
                        help="the model in the server process, or in a child process of its own")
    parser.add_argument("--client-url", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--client-cpus", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_url:
        if args.client_cpus:
            os.sched_setaffinity(0, [int(cpu) for cpu in args.client_cpus.split(",")])
        return client_main(args)
    cpus = sorted(os.sched_getaffinity(0)) if args.pin else []
    if args.pin and len(cpus) < 2:
        parser.error("--pin needs at least 2 CPUs")
    in_process = args.backend == "transformers"
    if args.pin:  # before torch starts its threads, which inherit this
        os.sched_setaffinity(0, cpus[:1] if in_process else cpus[1:])

    import torch
    import uvicorn

    from sovforge.serve.app import create_app
    from sovforge.serve.backend import Job, make_backend
    from sovforge.serve.config import ServeConfig

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    os.environ["SOVFORGE_HOME"] = str(tmp / "home")
    model = build_model(tmp)
    cfg = ServeConfig(model=model, state_dir=tmp / "state", force_unpromoted=True, requests_per_minute=10**6,
                      tokens_per_day=10**9, max_concurrent=args.clients, max_batch_size=args.clients,
                      backend=args.backend)
    engine = make_backend(args.backend, model, device="cpu", max_batch_size=args.clients,
                          **({} if in_process else {"threads": 1}))
    worker_pid = getattr(engine, "worker_pid", None)
    if args.pin and worker_pid:  # the model process gets the first CPU to itself, every one of its threads
        for tid in os.listdir(f"/proc/{worker_pid}/task"):
            os.sched_setaffinity(int(tid), cpus[:1])

    def server_cpu() -> float:
        """CPU seconds of the server: this process (all threads) plus the model process when there is one."""
        if worker_pid is None:
            return time.process_time()
        fields = Path(f"/proc/{worker_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return time.process_time() + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    app = create_app(cfg, backend=engine)
    key = app.state.store.create_key("bench")[1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    backend = app.state.serving["backend"]
    ids = backend.chat_prompt([{"role": "user", "content": PROMPT}])
    before = app.state.store.count()

    def direct() -> float:
        first = None
        for _ in backend.submit(Job(list(ids), args.max_tokens, 0.0, ignore_eos=True)):
            first = first or time.perf_counter()
        return first

    def gateway_round(clients: int, seconds: float) -> tuple[list[float], list[float], int]:
        env = {**os.environ, "SOVFORGE_BENCH_KEY": key}
        out = subprocess.run([sys.executable, __file__, "--client-url", f"http://127.0.0.1:{port}/v1",
                              "--model", app.state.model_id, "--clients", str(clients), "--seconds", str(seconds),
                              "--max-tokens", str(args.max_tokens), "--client", args.client,
                              *(["--client-cpus", ",".join(map(str, cpus[1:]))] if args.pin else [])], env=env,
                             capture_output=True, text=True,
                             timeout=seconds + 120)
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            return [], [], clients
        result = json.loads(out.stdout.strip().splitlines()[-1])
        return result["latencies"], result["firsts"], result["errors"]

    results: dict[tuple[str, int], list] = {}
    single = args.single_seconds if args.single_seconds is not None else args.seconds / 3
    for clients, seconds in ((1, single), (args.clients, args.seconds)):
        per_round = seconds / args.rounds
        for _ in range(args.rounds):
            for name, run in (("gateway", gateway_round), ("backend", lambda c, s: drive(c, s, direct))):
                cpu = server_cpu()  # the gateway's client is in its own process, not counted
                batches = backend.batches_run
                lat, firsts, err = run(clients, per_round)
                acc = results.setdefault((name, clients), [[], [], 0, 0.0, 0.0, 0])
                acc[5] += backend.batches_run - batches
                acc[0] += lat
                acc[1] += firsts
                acc[2] += err
                acc[3] += per_round
                acc[4] += server_cpu() - cpu
    server.should_exit = True
    thread.join(timeout=60)
    engine.close()
    store = app.state.store
    pinning = (f"server CPU {cpus[0]}, client CPUs {cpus[1:]}" if in_process else
               f"model process CPU {cpus[0]}, gateway + client CPUs {cpus[1:]}") if args.pin else ""
    problems = store.verify()
    gateway_requests = sum(len(v[0]) + v[2] for (name, _), v in results.items() if name == "gateway")
    records = sum(1 for r in store.records() if r["seq"] > before and r["route"] == "/v1/chat/completions")
    print(f"client={args.client} max_tokens={args.max_tokens} rounds={args.rounds} cpu_count={os.cpu_count()} "
          f"backend={args.backend} pinned={pinning if args.pin else 'no'} "
          f"load_avg={os.getloadavg()[0]:.1f} (tiny 2-layer model: measures overhead only)")
    print(f"{'path':<9}{'clients':>8}{'requests':>10}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}{'1st-text p50':>14}"
          f"{'req/s':>8}{'server CPU ms/req':>19}{'rows/batch':>12}")
    ok = not problems and records == gateway_requests
    for (name, clients), (lat, firsts, err, secs, cpu, batches) in sorted(results.items(),
                                                                 key=lambda kv: (kv[0][1], kv[0][0])):
        ok = ok and err == 0 and bool(lat)
        print(f"{name:<9}{clients:>8}{len(lat):>10}{err:>8}{1000 * percentile(lat, .5):>9.1f}"
              f"{1000 * percentile(lat, .99):>9.1f}{1000 * percentile(firsts, .5):>14.1f}{len(lat) / secs:>8.2f}"
              f"{1000 * cpu / max(len(lat), 1):>19.2f}{len(lat) / max(batches, 1):>12.2f}")
    for clients in (1, args.clients):
        gw, be = results[("gateway", clients)], results[("backend", clients)]
        if gw[0] and be[0]:
            print(f"{clients} client(s): p50 added by the gateway {1000 * (percentile(gw[0], .5) - percentile(be[0], .5)):.1f} ms; "
                  f"throughput ratio gateway/backend {len(gw[0]) / len(be[0]):.2f}; "
                  f"mean {1000 * statistics.fmean(gw[0]):.1f} vs {1000 * statistics.fmean(be[0]):.1f} ms")
    print(f"audit records {records} == gateway requests {gateway_requests}: {records == gateway_requests}; "
          f"audit verify: {'OK' if not problems else problems[:3]}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
