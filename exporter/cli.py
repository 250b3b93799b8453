"""The command line (docs/reference.md, Command line)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path

from exporter import __version__
from exporter.config import (
    ConfigError,
    Settings,
    build_settings,
    config_warnings,
    load_config,
    split_listen_address,
)
from exporter.demo import Demo
from exporter.logsetup import setup_logging
from exporter.redact import Redactor
from exporter.runtime import Exporter, tune_garbage_collection
from exporter.scheduler import apply_changes, build_scheduler
from exporter.serving.auth import WebConfig, load_web_config
from exporter.serving.failures import FailureIndex, Query, as_json, search
from exporter.serving.server import WebServer

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
    # Each with the exporter-toolkit's name too, which every Go exporter's operators know.
    p.add_argument(
        "--listen",
        "--web.listen-address",
        dest="listen",
        metavar="HOST:PORT",
        help="overrides listen_address",
    )
    p.add_argument(
        "--web-config",
        "--web.config.file",
        dest="web_config",
        type=Path,
        metavar="FILE",
        help="TLS and basic auth (the exporter-toolkit's web-config.yml)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument(
        "--enable-lifecycle",
        action="store_true",
        help="also accept POST /-/reload to reload the configuration",
    )
    p.add_argument(
        "--failures",
        type=Path,
        metavar="FILE",
        help="with --once: also write the /failures JSON document (every record) to FILE",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


class ConfigFiles:
    """Where the configuration comes from, read again on every reload (SIGHUP, POST /-/reload)."""

    def __init__(self, args: argparse.Namespace, demo: Demo | None) -> None:
        self._args, self._demo = args, demo
        self._demo_settings: Settings | None = None

    def settings(self) -> Settings:
        args = self._args
        if self._demo is not None:
            if self._demo_settings is None:
                self._demo_settings = build_settings(self._demo.start())
            settings = self._demo_settings
        else:
            settings = load_config(args.config)
        if args.listen:
            try:
                split_listen_address(args.listen)
            except ValueError as exc:
                raise ConfigError([f"--listen: {exc}"]) from None
            settings = settings.model_copy(update={"listen_address": args.listen})
        return settings

    @property
    def is_demo(self) -> bool:
        return self._demo is not None

    def web_config(self) -> WebConfig:
        return load_web_config(self._args.web_config) if self._args.web_config else WebConfig()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.demo == bool(args.config):
        parser().error("give --config FILE, or --demo")
    if args.failures is not None and not args.once:
        parser().error("--failures FILE goes with --once")
    demo = Demo() if args.demo else None
    if demo:
        # The demo says what it starts (a table source or not) while its configuration is made:
        # logged from the start. Its secrets are its simulators' own, redacted once they are known.
        setup_logging(args.log_level, args.log_format, Redactor([]))
    files = ConfigFiles(args, demo)
    try:
        settings = files.settings()
        web_config = files.web_config()
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        if demo:
            demo.stop()
        return EXIT_CONFIG
    warnings = [] if demo else config_warnings(settings, os.environ)
    if args.check:
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"configuration OK: {len(settings.sources)} source(s)")
        return EXIT_OK
    redactor = settings.redactor()
    setup_logging(args.log_level, args.log_format, redactor)
    for warning in warnings:
        log.warning("configuration: %s", warning)
    tune_garbage_collection()
    try:
        if args.once:
            return asyncio.run(run_once(settings, args.failures))
        return asyncio.run(serve(files, settings, web_config, redactor, lifecycle=args.enable_lifecycle))
    finally:
        if demo:
            demo.stop()


async def run_once(settings: Settings, failures: Path | None = None) -> int:
    exporter = Exporter(settings)
    try:
        succeeded = await exporter.poll_all()
    finally:
        await exporter.aclose()
    sys.stdout.buffer.write(exporter.snapshot.text)
    sys.stdout.flush()
    if failures is not None:
        lanes = FailureIndex().refresh(exporter.states)
        everything = search(lanes, Query(), everything=True, scrub=exporter.redactor.scrub)
        try:
            failures.write_bytes(as_json(everything, Query(), everything=True))
        except OSError as exc:
            print(f"--failures: cannot write {failures}: {exc.strerror}", file=sys.stderr)
            return EXIT_CONFIG
    return EXIT_OK if succeeded else EXIT_FAILED


class Service:
    """Serve mode: the lanes on their schedule, the HTTP server, and their lifecycle (reload on
    SIGHUP or POST /-/reload; stop on SIGTERM or SIGINT; docs/reference.md, Command line)."""

    def __init__(self, files: ConfigFiles, settings: Settings, exporter: Exporter, web: WebServer) -> None:
        self._files, self._settings = files, settings
        self.exporter, self.web = exporter, web
        self.scheduler = build_scheduler(exporter.lanes.values())
        self._reloading = asyncio.Lock()

    async def reload(self) -> list[str]:
        """Apply the configuration files as they are now; the problems if they are rejected."""
        async with self._reloading:
            try:
                settings, web_config = self._files.settings(), self._files.web_config()
            except ConfigError as exc:
                for problem in exc.problems:
                    log.error("configuration rejected, the running one is kept: %s", problem)
                self.exporter.record_reload(False)
                return exc.problems
            for key in ("listen_address", "state_dir", "state_max_age"):
                if getattr(settings, key) != getattr(self._settings, key):
                    log.warning(
                        "%s changed to %s: it takes effect at the next restart", key, getattr(settings, key)
                    )
            changes = await self.exporter.apply(settings)
            apply_changes(self.scheduler, changes)
            await self.web.apply(web_config)
            self._settings = settings
            self.exporter.record_reload(True)
            log.info(
                "configuration reloaded: %d source(s) kept, %d started, %d stopped",
                len(changes.kept),
                len(changes.started),
                len(changes.stopped),
            )
            return []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        reloads: set[asyncio.Task[list[str]]] = set()

        def reload_on_signal() -> None:
            task = asyncio.ensure_future(self.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload_on_signal)
        self.scheduler.start()
        await stop.wait()
        log.info("stopping")
        for task in reloads:
            task.cancel()
        # Lanes first: their polls in flight end quietly as stopped, before the scheduler's
        # shutdown cancels what is left of its jobs.
        await self.exporter.aclose()
        self.scheduler.shutdown(wait=False)
        await self.web.stop()


async def serve(
    files: ConfigFiles, settings: Settings, web_config: WebConfig, redactor: Redactor, *, lifecycle: bool
) -> int:
    exporter = Exporter(settings, redactor=redactor)
    host, port = split_listen_address(settings.listen_address)
    service: Service | None = None
    # What is loaded by now lives as long as the process: keep it out of every future collection,
    # so that full collections, which pause the event loop, only scan what polls create.
    gc.freeze()

    async def reload() -> list[str]:
        assert service is not None
        return await service.reload()

    try:
        web = WebServer(exporter, host, port, web_config, reload=reload if lifecycle else None)
    except OSError as exc:
        print(
            f"listen_address: cannot listen on {settings.listen_address}: {exc.strerror}",
            file=sys.stderr,
        )
        await exporter.aclose()
        return EXIT_FAILED
    await web.start()
    service = Service(files, settings, exporter, web)
    url = f"{web.scheme}://{host if host != '0.0.0.0' else '127.0.0.1'}:{web.port}/metrics"
    if files.is_demo:
        print(f"Demo running: metrics at {url} (Ctrl-C to stop)", flush=True)
    log.info("serving %d source(s) at %s", len(exporter.lanes), url)
    await service.run()
    return EXIT_OK
