"""Pipeline steps over the datasets and the model registry: each calls the service the CLI calls
(``llmdock.datasets``, ``llmdock.registry``), with the pipeline's store, home and actor (``ctx.services``).
Their work is synchronous (files, the store), so it runs in a worker thread."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Literal

from pydantic import Field

from llmdock.errors import InvalidRequest
from llmdock.jobs.steps import StepContext, StepParams


def _datasets(ctx: StepContext) -> Any:
    from llmdock.datasets.versions import Datasets

    return Datasets(ctx.services.store, ctx.services.settings.home)


def _version_out(version: Any, new: bool) -> dict[str, Any]:
    return {
        "dataset": f"{version.name}/{version.version}",
        "version": version.version,
        "digest": version.digest,
        "rows": version.rows,
        "new": new,
    }


class ImportParams(StepParams):
    file: str = Field(min_length=1, description="chat JSONL, prompt/completion JSONL, CSV or Parquet")
    name: str = Field(min_length=1, description="the dataset to add a version to")
    format: str = ""
    on_error: Literal["skip", "stop"] = "skip"
    description: str = ""


class DatasetImportStep:
    """``llmdock datasets import FILE --name NAME`` as a step."""

    name: ClassVar[str] = "datasets.import"
    Params: ClassVar[type[StepParams]] = ImportParams
    outputs: ClassVar[tuple[str, ...]] = ("dataset", "version", "digest", "rows", "new")

    async def run(self, params: ImportParams, ctx: StepContext) -> dict[str, Any]:
        return await asyncio.to_thread(self._import, params, ctx)

    @staticmethod
    def _import(params: ImportParams, ctx: StepContext) -> dict[str, Any]:
        from llmdock.datasets.importing import load_file

        path = ctx.path(params.file)
        if not path.is_file():
            raise InvalidRequest(f"no file {path}", param="file")
        rows, report, source = load_file(path, params.format, params.on_error)
        ctx.lines.extend(report.errors)
        if not rows:
            raise InvalidRequest(
                f"no valid rows in {path} ({report.read} read): nothing stored", param="file"
            )
        record = {"step": "import", "params": {"on_error": params.on_error}, **report.as_dict()}
        version, new = _datasets(ctx).save(
            params.name,
            rows,
            ctx.services.actor,
            lineage={"sources": [source], "steps": [record]},
            report=report.as_dict(),
            description=params.description,
        )
        ctx.log(f"{version.name}/{version.version}: {version.rows} rows kept of {report.read} read")
        return _version_out(version, new)


class CleanParams(StepParams):
    dataset: str = Field(min_length=1, description="NAME, NAME/VERSION or NAME@DIGEST")
    steps: list[str] = Field(default_factory=list, description='as --step: "length max_tokens=512"')
    recipe: str | None = Field(default=None, description="or a recipe file (steps: [name: {params}])")
    save_as: str = ""


class DatasetCleanStep:
    """``llmdock datasets clean`` as a step: the version's rows through cleaning steps, saved as a new one."""

    name: ClassVar[str] = "datasets.clean"
    Params: ClassVar[type[StepParams]] = CleanParams
    outputs: ClassVar[tuple[str, ...]] = ("dataset", "version", "digest", "rows", "new")

    async def run(self, params: CleanParams, ctx: StepContext) -> dict[str, Any]:
        return await asyncio.to_thread(self._clean, params, ctx)

    @staticmethod
    def _clean(params: CleanParams, ctx: StepContext) -> dict[str, Any]:
        from llmdock.datasets import clean as cleaning

        services = ctx.services
        if (params.recipe is None) == (not params.steps):
            raise InvalidRequest("give steps (one or more) or a recipe, not both", param="steps")
        known = services.dataset_steps
        specs = (
            cleaning.recipe_specs(ctx.path(params.recipe))
            if params.recipe
            else cleaning.cli_specs(params.steps, known)
        )
        base = cleaning.context(services.settings)  # no model to ask: paraphrase is for the CLI
        version, new, records = cleaning.clean(
            _datasets(ctx), params.dataset, specs, known, base, services.actor, save_as=params.save_as
        )
        for r in records:
            ctx.log(f"{r['step']}: {r['read']} -> {r['kept']} (dropped {r['dropped'] or 'none'})")
        return _version_out(version, new)


class RegisterParams(StepParams):
    name: str = Field(min_length=1)
    path: str = Field(min_length=1, description="the model file (e.g. a GGUF)")
    format: str = ""
    lineage: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    aliases: list[str] = Field(default_factory=list)


class ModelRegisterStep:
    """``llmdock models register`` as a step: the file stored content-addressed as the next version."""

    name: ClassVar[str] = "models.register"
    Params: ClassVar[type[StepParams]] = RegisterParams
    outputs: ClassVar[tuple[str, ...]] = ("uri", "version", "artifact")

    async def run(self, params: RegisterParams, ctx: StepContext) -> dict[str, Any]:
        return await asyncio.to_thread(self._register, params, ctx)

    @staticmethod
    def _register(params: RegisterParams, ctx: StepContext) -> dict[str, Any]:
        from llmdock.registry import ModelRegistry

        services = ctx.services
        path = ctx.path(params.path)
        if not path.is_file():
            raise InvalidRequest(f"no model file {path}", param="path")
        registry = ModelRegistry(services.store, services.settings.home)
        row = registry.register(
            params.name,
            path,
            services.actor,
            fmt=params.format,
            lineage=params.lineage,
            metrics=params.metrics,
            description=params.description,
            progress=False,
        )
        for alias in params.aliases:
            registry.labels.set(params.name, alias, row.version, services.actor)
        ctx.log(f"models:/{row.name}/{row.version} (artifact {row.artifact[:12]}, {row.size:,} bytes)")
        return {"uri": f"models:/{row.name}/{row.version}", "version": row.version, "artifact": row.artifact}


class PromoteParams(StepParams):
    model: str = Field(min_length=1, description="models:/NAME/VERSION or models:/NAME@alias")
    alias: str = Field(min_length=1, description="the alias to point at it, e.g. production")


class ModelPromoteStep:
    """``llmdock models promote`` as a step: an alias moved to a version (audited; rollback undoes it)."""

    name: ClassVar[str] = "models.promote"
    Params: ClassVar[type[StepParams]] = PromoteParams
    outputs: ClassVar[tuple[str, ...]] = ("uri", "version", "previous")

    async def run(self, params: PromoteParams, ctx: StepContext) -> dict[str, Any]:
        return await asyncio.to_thread(self._promote, params, ctx)

    @staticmethod
    def _promote(params: PromoteParams, ctx: StepContext) -> dict[str, Any]:
        from llmdock.registry import ModelRegistry
        from llmdock.registry.models import parse_uri

        services = ctx.services
        registry = ModelRegistry(services.store, services.settings.home)
        row = registry.get(parse_uri(params.model))
        before = registry.labels.set(row.name, params.alias, row.version, services.actor)
        ctx.log(f"models:/{row.name}@{params.alias}: {before} -> {row.version}")
        return {"uri": f"models:/{row.name}@{params.alias}", "version": row.version, "previous": before or 0}
