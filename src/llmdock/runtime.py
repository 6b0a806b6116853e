"""The Runtime: settings turned into live objects (backends, pipeline, store, trace writer).

The gateway and the CLI both build one; batch jobs and evaluations will too, so they all run the same
pipeline over the same backends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from llmdock.auth.service import AuthService
from llmdock.config import ModelConfig, Settings
from llmdock.errors import ConfigError, LlmdockError, ModelNotFound
from llmdock.experiments.watch import ExperimentWatch
from llmdock.pipeline.env import StageEnv
from llmdock.pipeline.runner import Pipeline
from llmdock.pipeline.stages import Stage
from llmdock.pipeline.telemetry import OtlpExporter, TraceSink, otlp_configured
from llmdock.plugins import Plugins, load_plugins
from llmdock.privacy.privacy_policy import PrivacyPolicy, RedactingLogRecords
from llmdock.prompts import PromptRegistry, PromptResolver
from llmdock.routing.build import build_route
from llmdock.routing.follow import RegistryFollow
from llmdock.routing.router import ModelRoute
from llmdock.shared_state import SharedState
from llmdock.store.engine import Store
from llmdock.store.ingest_client import IngestedWriter
from llmdock.store.journal import Journal
from llmdock.store.trace_policy import RetentionPolicy, TraceSampling
from llmdock.store.trace_writer import TraceWriter

if TYPE_CHECKING:
    from llmdock.monitor.alerts import AlertLoop
    from llmdock.monitor.metrics import RequestMetrics
    from llmdock.monitor.online_eval import OnlineEvaluator

log = logging.getLogger("llmdock")


def build_backends(
    settings: Settings, plugins: Plugins, shared: SharedState | None = None
) -> dict[str, ModelRoute]:
    """One routed backend per model name, with fallbacks resolved and checked for cycles."""
    models = settings.all_models()
    routes = {
        name: build_route(name, cfg, settings, plugins.backends, shared) for name, cfg in models.items()
    }
    for name, cfg in models.items():
        for i, fallback in enumerate(cfg.fallbacks):
            where = settings.where(("models", name, "fallbacks", i))
            if fallback not in routes:
                raise ConfigError(f"fallback {fallback!r} is not a configured model", where=where)
            if routes[fallback].task != routes[name].task:
                raise ConfigError(
                    f"fallback {fallback!r} is a {routes[fallback].task} model, not {cfg.task}", where=where
                )
            routes[name].fallbacks.append(routes[fallback])
    for name in models:
        _check_no_cycle(name, models, settings)
    for field in ("default_model", "default_embedding_model"):
        value = getattr(settings, field)
        if value and value not in routes:
            raise ConfigError(f"model {value!r} is not configured", where=settings.where((field,)))
    return routes


def _check_no_cycle(start: str, models: dict[str, ModelConfig], settings: Settings) -> None:
    path = [start]

    def visit(name: str) -> None:
        for i, nxt in enumerate(models[name].fallbacks):
            if nxt in path:
                cycle = " -> ".join([*path[path.index(nxt) :], nxt])
                raise ConfigError(
                    f"fallbacks form a cycle: {cycle}", where=settings.where(("models", name, "fallbacks", i))
                )
            path.append(nxt)
            visit(nxt)
            path.pop()

    visit(start)


def build_pipeline(
    settings: Settings, plugins: Plugins, sink: TraceSink | None, names: list[str] | None = None
) -> Pipeline:
    """The stages ``names`` (default: the settings' ``pipeline``) built from the registered factories."""
    stages = []
    for i, name in enumerate(settings.pipeline if names is None else names):
        factory = plugins.stages.get(name)
        if factory is None:
            known = ", ".join(sorted(plugins.stages))
            raise ConfigError(
                f"unknown stage {name!r} (known: {known})", where=settings.where(("pipeline", i))
            )
        stage = factory(settings)
        if not isinstance(stage, Stage):
            raise ConfigError(
                f"stage {name!r} does not follow the Stage protocol (name, bind(env), async __call__(ctx))",
                where=settings.where(("pipeline", i)),
            )
        stages.append(stage)
    return Pipeline(stages, sink, where=settings.where(("pipeline",)))


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        with_store: bool = True,
        plugins: Plugins | None = None,
        serving: bool = False,
    ) -> None:
        self.settings = settings
        self.privacy = PrivacyPolicy(settings)
        self.plugins = plugins or load_plugins()
        self.shared = SharedState.connect(settings)
        self.backends = build_backends(settings, self.plugins, self.shared)
        self.serving = serving  # under `llmdock serve`: journaled traces go to an ingester process
        self.store: Store | None = None
        self.writer: TraceWriter | IngestedWriter | None = None
        self.store_error = ""
        self.start_error: LlmdockError | None = None  # why start() failed, for a one-line report
        self.prompts: PromptResolver | None = None  # prompt templates, from the store
        self.experiments: ExperimentWatch | None = None  # running A/B experiments, kept current
        self.follow: RegistryFollow | None = None  # models served from registry aliases, kept current
        if with_store:
            self._open_store()
        self.auth = AuthService(settings, self.store, self.shared)
        self.privacy.subject_key = self.auth.secret
        self.otlp = OtlpExporter() if otlp_configured() else None
        self.retention = RetentionPolicy.from_settings(settings)  # applied by the gateway (retention_loop)
        self.sink = TraceSink(
            self.writer,
            store_bodies=settings.trace.store_bodies,
            otlp=self.otlp,
            sampling=TraceSampling.from_settings(settings),
        )
        if self.experiments is not None:  # guard rails count finished requests while one runs (guard_tally)
            self.experiments.observers = self.sink.observers
        self.stage_env = StageEnv(
            settings=settings,
            backend=self.backend,
            store=self.store,
            shared=self.shared,
            privacy=self.privacy,
            registered=self.plugins.registered(),
        )
        self.pipeline = self.pipeline_with(settings.pipeline)
        self.metrics: RequestMetrics | None = None  # the gateway's /metrics (enable_metrics)
        self.alerts: AlertLoop | None = None  # alert rules, evaluated by the serving runtime (start)
        self._alert_task: asyncio.Task[None] | None = None
        self.online_eval: OnlineEvaluator | None = None  # sampled online evaluation (start_online_eval)
        self._online_task: asyncio.Task[None] | None = None
        # Log output is redacted too (privacy.pii): installed last, so a failed start leaves logging as it was.
        self._log_records = RedactingLogRecords(self.privacy) if self.privacy.engine is not None else None
        if self._log_records is not None:
            self._log_records.install()

    def _open_store(self) -> None:
        url = self.settings.resolved_database_url()
        try:
            self.store = Store(url, keyring=self.privacy.keyring)
        except LlmdockError as exc:
            # Requests are still served; traces wait in memory until the store comes back.
            self.store_error = exc.one_line()
            log.warning("store not ready, traces will be kept in memory: %s", self.store_error)
            self.store = Store(url, migrate=False, keyring=self.privacy.keyring)
        self.prompts = PromptResolver(PromptRegistry(self.store), self.settings.prompts.cache_ttl_s)
        self.follow = follow = RegistryFollow(self.backends, self.store)
        self.experiments = ExperimentWatch(
            self.store,
            self.prompts.forget,
            lambda table: follow.want(table.registry_variants()),
            load_errors=lambda: follow.variant_errors,
        )
        t = self.settings.trace
        if not t.enabled:
            return
        journal = None
        if t.journal:
            journal = Journal(
                self.settings.home.expanduser() / "journal",
                sync=t.journal_sync,
                max_bytes=int(t.journal_max_mb * (1 << 20)),
                when_full=t.journal_full,
            )
        if journal is not None and (t.ingest == "process" or (t.ingest == "auto" and self.serving)):
            self.writer = IngestedWriter(
                self.store,
                journal,
                batch_size=t.batch_size,
                flush_interval_s=t.flush_interval_s,
                prepare=self.privacy.prepare_trace if self.privacy.active else None,
            )
            self.writer.adopt_orphans()
            return
        self.writer = TraceWriter(
            self.store,
            batch_size=t.batch_size,
            flush_interval_s=t.flush_interval_s,
            max_buffer=t.max_buffer,
            prepare=self.privacy.prepare_trace if self.privacy.active else None,
            journal=journal,
        )
        if journal is not None:
            # Before the first request: budgets read what was spent from the traces.
            self.writer.adopt_orphans()

    def pipeline_with(self, names: list[str]) -> Pipeline:
        """A pipeline of the stages ``names`` over this runtime's models, store and trace sink, its stages bound:
        the main one (the settings' pipeline), or an evaluation target's (no cache, guards off…)."""
        pipeline = build_pipeline(self.settings, self.plugins, self.sink, names)
        for stage in pipeline.stages:
            stage.bind(self.stage_env)
        return pipeline

    def enable_metrics(self) -> RequestMetrics:
        """Count every finished request for ``GET /metrics`` (the gateway asks; the CLI never pays for it)."""
        if self.metrics is None:
            from llmdock.monitor.metrics import RequestMetrics

            writer = self.writer
            self.metrics = RequestMetrics(
                self.backends, (lambda: int(writer.status()["pending"])) if writer is not None else None
            )
            self.sink.observers.append(self.metrics.record)
        return self.metrics

    def backend(self, model: str) -> ModelRoute:
        backend = self.backends.get(model)
        if backend is None:
            known = ", ".join(sorted(self.backends))
            raise ModelNotFound(f"The model {model!r} does not exist. Known models: {known}", param="model")
        return backend

    async def start(self) -> None:
        """Load every model that is not lazy, so the first request does not pay for it."""
        for route in self.backends.values():
            if not route.lazy:
                await route.start()
        if self.metrics is not None:
            self.metrics.start(self.settings.metrics.flush_interval_s)
        if self.settings.alerts.rules and self.store is not None:
            from llmdock.monitor.alerts import AlertLoop

            self.alerts = AlertLoop(self.settings.alerts, self.store, self.settings.home)
            self._alert_task = asyncio.get_running_loop().create_task(self.alerts.run())
        if self.experiments is not None and self.store is not None and self.store.migrated:
            if self.follow is not None:
                self.follow.start()
            self.experiments.start()

    def start_online_eval(self) -> None:
        """Score a sample of the stored traces in the background (``online_eval.rules``; the gateway asks, the
        CLI never pays for it). A bad rule is a ConfigError naming its ``file:line``."""
        if self.settings.online_eval.rules and self.store is not None and self.online_eval is None:
            from llmdock.monitor.online_eval import evaluator_for

            self.online_eval = evaluator_for(
                self.settings, self.stage_env, self.plugins.metrics, self.metrics
            )
            self._online_task = asyncio.get_running_loop().create_task(self.online_eval.run())

    def readiness(self) -> dict[str, Any]:
        models = {name: r.loaded for name, r in list(self.backends.items()) if not r.lazy}
        store: dict[str, Any] = {"ok": False, "error": "traces disabled"}
        if self.store is not None:
            try:
                if not self.store.migrated:
                    self.store.migrate()
                self.store.ping()
                store = {"ok": True}
            except LlmdockError as exc:
                store = {"ok": False, "error": exc.one_line()}
        writer = self.writer.status() if self.writer else {}
        ready = all(models.values()) and store["ok"] and writer.get("ok", True)
        state = {"ready": ready, "models": models, "store": store, "trace_writer": writer}
        if self.shared is not None:
            state["redis"] = self.shared.status()  # degraded Redis is reported, but the worker still serves
        if self.follow is not None and (follow := self.follow.status()):
            state["registry_follow"] = follow  # the old version serves on while a new one fails to load
        return state

    async def close(self) -> None:
        if self.metrics is not None:
            self.metrics.stop()
        if self._alert_task is not None and self.alerts is not None:
            self._alert_task.cancel()
            self.alerts.close()
        if self._online_task is not None:
            self._online_task.cancel()
        if self.experiments is not None:
            self.experiments.stop()
        if self.follow is not None:
            await self.follow.stop()
        for backend in self.backends.values():
            await backend.close()
        if self.writer is not None:
            self.writer.close()
        if self.otlp is not None:
            self.otlp.shutdown()
        if self.store is not None:
            self.store.close()
        if self.shared is not None:
            await self.shared.close()
        if self._log_records is not None:
            self._log_records.uninstall()
