"""The source kinds. Adding one: a module with its config model and Source, and a line here."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from exporter.sources.aep import AepConfig, AepSource
from exporter.sources.azure_table import AzureTableConfig, AzureTableSource
from exporter.sources.base import Source
from exporter.sources.commvault import CommvaultConfig, CommvaultSource
from exporter.sources.rezolve import RezolveConfig, RezolveSource
from exporter.sources.unstructured import UnstructuredConfig, UnstructuredSource

SOURCE_TYPES: dict[str, type[Source[Any]]] = {
    "rezolve": RezolveSource,
    "azure_table": AzureTableSource,
    "commvault": CommvaultSource,
    "unstructured": UnstructuredSource,
    "aep": AepSource,
}
KINDS = tuple(SOURCE_TYPES)

AnySourceConfig = Annotated[
    RezolveConfig | AzureTableConfig | CommvaultConfig | UnstructuredConfig | AepConfig,
    Field(discriminator="kind"),
]


def build_source(config: AnySourceConfig) -> Source[Any]:
    return SOURCE_TYPES[config.kind](config)
