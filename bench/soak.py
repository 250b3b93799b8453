"""Soak: the real program polls every kind every second, with steady data, until it has made
10,000 polls; its resident memory and open file descriptors are sampled all along.

    make soak             # not part of make bench; or: python bench/soak.py [--polls N] [--every S]

The simulators of the four HTTP platforms and an Azurite table (the demo's data, not evolving)
are polled by two copies of the program started side by side:
- the soak: every source every second;
- the baseline: the same sources polled once, then idle (every hour). It shows what the same
  program's memory does over the same time when it does not poll: the noise floor.
Figures go to docs/performance.md by hand; nothing here asserts a number.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.demo import TABLE_ENV, Demo
from exporter.simulators.table import azurite_connection_string, start_azurite

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-table"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


@dataclass(frozen=True)
class Sample:
    elapsed: float
    polls: int
    errors: int
    rss_kib: int
    fds: int


class Program:
    """One copy of the exporter, as a user runs it, with its own configuration."""

    def __init__(self, name: str, document: dict[str, Any], workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        config = workdir / f"{name}.yml"
        config.write_text(yaml.safe_dump(document))
        self._log = (workdir / f"{name}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config", str(config), "--listen", f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        wait_for(f"http://127.0.0.1:{self.port}/readyz", self.process)

    def sample(self, started: float) -> Sample:
        polls = errors = 0
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "ingestion_source_poll_duration_seconds_count":
                    polls += int(sample.value)
                elif sample.name == "ingestion_source_poll_errors_total":
                    errors += int(sample.value)
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{self.process.pid}/fd"))
        return Sample(time.monotonic() - started, polls, errors, rss, fds)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._log.close()


def row(name: str, sample: Sample) -> str:
    return (
        f"| {name} | {sample.elapsed:,.0f} s | {sample.polls:,} | {sample.errors:,} | "
        f"{sample.rss_kib / 1024:,.1f} MiB | {sample.fds} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--polls", type=int, default=10_000, help="polls of the soak copy, all sources together"
    )
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    args = parser.parse_args()

    azurite_port = free_port()
    if not AZURITE.exists():
        raise SystemExit(f"Azurite is not installed at {AZURITE}: run `make soak`, which installs it")
    azurite = start_azurite(AZURITE, azurite_port)
    os.environ[TABLE_ENV] = azurite_connection_string(azurite_port)
    demo = Demo(seed=42, evolve=False)
    document = demo.start()
    document.pop("listen_address")
    kinds = sorted({source["kind"] for source in document["sources"]})
    programs: list[Program] = []
    try:
        with tempfile.TemporaryDirectory() as workdir:
            soak = Program("soak", {**document, "poll_interval": "1s"}, Path(workdir))
            programs.append(soak)
            baseline = Program("baseline", {**document, "poll_interval": "1h"}, Path(workdir))
            programs.append(baseline)
            started = time.monotonic()
            samples: list[tuple[Sample, Sample]] = []
            print(f"soak: {len(document['sources'])} sources ({', '.join(kinds)}), each polled every second")
            while True:
                pair = (soak.sample(started), baseline.sample(started))
                samples.append(pair)
                print(row("soak", pair[0]), row("baseline", pair[1]), flush=True)
                if pair[0].polls >= args.polls:
                    break
                time.sleep(args.every)
            report(samples)
    finally:
        for program in programs:
            program.stop()
        demo.stop()
        azurite.terminate()
        azurite.wait(timeout=30)


def report(samples: list[tuple[Sample, Sample]]) -> None:
    """The first sample after a tenth of the polls (warm: every code path has run) against the
    last, for both copies, and the range of descriptors over the whole run."""
    last_soak = samples[-1][0]
    warm_index = next(i for i, (s, _) in enumerate(samples) if s.polls >= last_soak.polls / 10)
    print()
    print("| copy | elapsed | polls | failed polls | RSS | open fds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for index, (soak, baseline) in ((warm_index, samples[warm_index]), (len(samples) - 1, samples[-1])):
        print(row(f"soak (sample {index})", soak))
        print(row(f"baseline (sample {index})", baseline))
    for which, name in ((0, "soak"), (1, "baseline")):
        warm, end = samples[warm_index][which], samples[-1][which]
        fds = [pair[which].fds for pair in samples]
        print(
            f"{name}: RSS {warm.rss_kib / 1024:.1f} -> {end.rss_kib / 1024:.1f} MiB "
            f"({(end.rss_kib - warm.rss_kib) / 1024:+.1f} MiB over {end.polls - warm.polls:,} polls); "
            f"fds {min(fds)}..{max(fds)}"
        )


if __name__ == "__main__":
    main()
