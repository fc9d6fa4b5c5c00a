"""python -m benchmarks.profile: where one worker's time goes under load (py-spy while wrk drives it).

Starts the service (or the naive baseline), drives one scenario with wrk at one concurrency, and
records one gunicorn worker with `py-spy record` meanwhile. Writes to --out-dir:
  profile.speedscope.json  py-spy's file, every thread, waits included: open it at https://www.speedscope.app
                           ("Left Heavy" is the flame graph)
  profile.folded           the working samples only, as folded stacks (flamegraph.pl, inferno, speedscope), in ms
  top.md                   the run and its throughput; working time per package and per function (own and
                           total); where threads wait (see stacks.py for how working and waiting are told apart)
py-spy attaches with ptrace: run as root, or with CAP_SYS_PTRACE, or with kernel.yama.ptrace_scope=0.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import generators, load, payloads, raw, servers, stacks
from benchmarks.generators import Summary
from benchmarks.payloads import Payload
from tests.harness import Server

LEAD_IN_S = 1  # wrk runs this long before and after the recording, so every sample is under load


@dataclass(frozen=True)
class Recording:
    worker: int  # the pid py-spy recorded
    cpu: dict[int, float]  # worker pid → CPU seconds used during the recording
    summary: Summary | None  # wrk's, over the lead-in, the recording and the lead-out


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("models"), help="model repository (default: models)")
    parser.add_argument("--target", choices=("service", "naive"), default="service", help="which server (default: service)")
    parser.add_argument("--scenario", choices=payloads.SCENARIOS, default="v2 json",
                        help="service body (default: v2 json); the naive app gets its JSON of as many images")
    parser.add_argument("--batching", choices=("on", "off"), default="on", help="service batching (default: on)")
    parser.add_argument("--concurrency", type=int, default=8, help="wrk connections (default: 8)")
    parser.add_argument("--duration", type=int, default=10, help="seconds recorded (default: 10)")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second (default: 100)")
    parser.add_argument("--native", action="store_true", help="also sample C/C++ frames (onnxruntime, numpy): slower")
    parser.add_argument("--nonblocking", action="store_true",
                        help="py-spy does not pause the worker per sample: less slowdown, some torn stacks")
    parser.add_argument("--top", type=int, default=30, help="rows per table in top.md (default: 30)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="onnxruntime device (default: cpu)")
    parser.add_argument("--out-dir", type=Path, default=Path("artifacts/profile"), help="where to write (default: artifacts/profile)")
    args = parser.parse_args(argv)
    if args.native and args.nonblocking:
        parser.error("py-spy cannot take native stacks with --nonblocking; choose one")
    return args


def py_spy() -> str:
    """py-spy from this interpreter's environment (pip installs it next to python), else from PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else "py-spy"


def record(args: argparse.Namespace, pid: int, output: Path) -> None:
    # --idle: every thread, every sample; stacks.py tells working from waiting (py-spy's guess keeps blocked threads).
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(args.duration), "--rate", str(args.rate),
               "--format", "speedscope", "--idle", "--output", str(output)]
    command += ["--native"] * args.native + ["--nonblocking"] * args.nonblocking
    result = subprocess.run(command, capture_output=True, text=True, timeout=args.duration + 60)
    if result.returncode != 0:
        message = result.stderr or result.stdout
        hint = "\n(py-spy attaches with ptrace: run as root or with CAP_SYS_PTRACE)" if "ermission" in message else ""
        raise SystemExit(f"error: py-spy failed ({result.returncode}): {message}{hint}")


def drive_and_record(args: argparse.Namespace, server: Server, payload: Payload, tmp: Path, output: Path) -> Recording:
    """wrk for the lead-in, the recording and a lead-out; py-spy on the worker busiest in the lead-in.

    Keep-alive connections stay with the worker that accepted them, so one worker may serve most
    of the load: profiling the first worker could record an idle one.
    """
    pids, measured = server.workers(), []
    driver = threading.Thread(target=lambda: measured.append(
        generators.run_wrk(server.url, payload, tmp, args.concurrency, args.duration + 2 * LEAD_IN_S)))
    driver.start()
    before = {pid: servers.cpu_seconds([pid]) for pid in pids}
    time.sleep(LEAD_IN_S)
    lead_in = {pid: servers.cpu_seconds([pid]) - before[pid] for pid in pids}
    worker = max(lead_in, key=lead_in.__getitem__)
    before = {pid: servers.cpu_seconds([pid]) for pid in pids}
    record(args, worker, output)
    cpu = {pid: servers.cpu_seconds([pid]) - before[pid] for pid in pids}
    driver.join()
    return Recording(worker, cpu, measured[0] if measured else None)


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    generators.require("wrk")
    images = payloads.test_images()
    payload = next(p for p in payloads.payloads(images) if p.scenario == args.scenario)
    if args.target == "naive":
        payload = next(p for p in payloads.naive_payloads(images) if p.images == payload.images)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    output = args.out_dir / "profile.speedscope.json"

    with tempfile.TemporaryDirectory(prefix="profile-") as tmp_name:
        tmp = Path(tmp_name)
        if args.target == "naive":
            model = raw.newest_model(args.repository, "fashion-mnist").resolve()
            server_context = servers.naive(model, tmp, len(os.sched_getaffinity(0)), args.device)
        else:
            server_context = servers.service(args.repository.resolve(), tmp, args.batching == "on", args.device)
        with server_context as server:
            load.check(server.url, payload)
            generators.run_wrk(server.url, payload, tmp, max(4, args.concurrency), 1)  # warm-up: every worker, every buffer
            servers.settle(server)
            recording = drive_and_record(args, server, payload, tmp, output)

    profile = stacks.read_speedscope(output)
    (args.out_dir / "profile.folded").write_text(stacks.folded(profile.working))
    (args.out_dir / "top.md").write_text(header(args, payload, recording) + "\n" + stacks.summary(profile, args.top))
    print(f"written: {output}, {args.out_dir / 'profile.folded'}, {args.out_dir / 'top.md'}", file=sys.stderr)


def header(args: argparse.Namespace, payload: Payload, recording: Recording) -> str:
    batching = f", batching {args.batching}" if args.target == "service" else ""
    cpu = ", ".join(f"{pid}{' (recorded)' if pid == recording.worker else ''}: {seconds:.2f} s"
                    for pid, seconds in recording.cpu.items())
    text = (f"# Profile: {args.target} `{payload.scenario}`{batching}, wrk -c{args.concurrency}\n\n"
            f"- py-spy {args.rate} Hz for {args.duration} s{', native frames' if args.native else ''}"
            f"{', nonblocking' if args.nonblocking else ''}, on the worker busiest in the lead-in\n"
            f"- CPU seconds per worker during the recording (all threads, onnxruntime's included): {cpu}\n")
    if s := recording.summary:
        text += (f"- throughput meanwhile: {s.ok / s.seconds * payload.images:.0f} img/s over all workers, p50 {s.p50_ms:.3g} ms, "
                 f"p99 {s.p99_ms:.3g} ms, {s.errors} errors (sampling slows the recorded worker)\n")
    return text


if __name__ == "__main__":
    main()
