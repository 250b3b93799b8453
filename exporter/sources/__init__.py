"""The source kinds. Adding one: a module with its config model (whose ``kind`` names it and
whose ``open`` makes its source), and its model in ``AnySourceConfig``."""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import Field

from exporter.configtypes import SourceConfig
from exporter.sources.aep import AepConfig
from exporter.sources.azure_table import AzureTableConfig
from exporter.sources.base import Source
from exporter.sources.commvault import CommvaultConfig
from exporter.sources.http_json import HttpJsonConfig
from exporter.sources.rezolve import RezolveConfig
from exporter.sources.unstructured import UnstructuredConfig

AnySourceConfig = Annotated[
    RezolveConfig | AzureTableConfig | CommvaultConfig | UnstructuredConfig | AepConfig | HttpJsonConfig,
    Field(discriminator="kind"),
]


def kind_of(model: type[SourceConfig]) -> str:
    """The name a configuration gives the kind: its model's ``kind`` literal."""
    (name,) = get_args(model.model_fields["kind"].annotation)
    return str(name)


CONFIG_TYPES: tuple[type[SourceConfig], ...] = get_args(get_args(AnySourceConfig)[0])
KINDS = tuple(kind_of(model) for model in CONFIG_TYPES)


def build_source(config: SourceConfig) -> Source[Any]:
    return config.open()
