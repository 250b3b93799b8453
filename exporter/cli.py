"""The command line (SPEC section 2)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from exporter import __version__
from exporter.config import ConfigError, Settings, build_settings, load_config, split_listen_address
from exporter.demo import Demo
from exporter.logsetup import setup_logging
from exporter.runtime import Exporter
from exporter.scheduler import build_scheduler
from exporter.web import WebConfig, WebServer, load_web_config

log = logging.getLogger("exporter")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ingestion-failure-exporter",
        description="Prometheus exporter for files that ingestion pipelines failed on.",
    )
    p.add_argument("--config", type=Path, help="configuration file (YAML)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="poll every source once, print the metrics, exit")
    mode.add_argument("--check", action="store_true", help="validate the configuration and exit")
    mode.add_argument("--demo", action="store_true", help="serve metrics from built-in simulators")
    p.add_argument("--listen", metavar="HOST:PORT", help="overrides listen_address")
    p.add_argument("--web-config", type=Path, metavar="FILE", help="TLS and basic auth (web-config.yml)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.demo == bool(args.config):
        parser().error("give --config FILE, or --demo")
    demo = Demo() if args.demo else None
    try:
        settings = build_settings(demo.start()) if demo else load_config(args.config)
        if args.listen:
            try:
                split_listen_address(args.listen)
            except ValueError as exc:
                raise ConfigError([f"--listen: {exc}"]) from None
            settings = settings.model_copy(update={"listen_address": args.listen})
        web_config = load_web_config(args.web_config) if args.web_config else None
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        if demo:
            demo.stop()
        return EXIT_CONFIG
    if args.check:
        print(f"configuration OK: {len(settings.sources)} source(s)")
        return EXIT_OK
    setup_logging(args.log_level, args.log_format, settings.redactor())
    try:
        if args.once:
            return asyncio.run(run_once(settings))
        return asyncio.run(serve(settings, web_config, demo=demo is not None))
    finally:
        if demo:
            demo.stop()


async def run_once(settings: Settings) -> int:
    exporter = Exporter(settings)
    try:
        succeeded = await exporter.poll_all()
    finally:
        await exporter.aclose()
    sys.stdout.buffer.write(exporter.snapshot.text)
    sys.stdout.flush()
    return EXIT_OK if succeeded else EXIT_FAILED


async def serve(settings: Settings, web_config: WebConfig | None, *, demo: bool = False) -> int:
    exporter = Exporter(settings)
    host, port = split_listen_address(settings.listen_address)
    try:
        web = WebServer(exporter, host, port, web_config).start()
    except OSError as exc:
        print(
            f"listen_address: cannot listen on {settings.listen_address}: {exc.strerror}",
            file=sys.stderr,
        )
        await exporter.aclose()
        return EXIT_FAILED
    url = f"{web.scheme}://{host if host != '0.0.0.0' else '127.0.0.1'}:{web.port}/metrics"
    if demo:
        print(f"Demo running: metrics at {url} (Ctrl-C to stop)", flush=True)
    log.info("serving %d source(s) at %s", len(exporter.states), url)
    scheduler = build_scheduler(exporter)
    scheduler.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("stopping")
    scheduler.shutdown(wait=False)
    web.stop()
    await exporter.aclose()
    return EXIT_OK
