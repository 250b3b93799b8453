"""The source kinds. Adding one: a module with its config model and Source, and a line here."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from exporter.sources.azure_table import AzureTableConfig, AzureTableSource
from exporter.sources.base import Source
from exporter.sources.rezolve import RezolveConfig, RezolveSource

SOURCE_TYPES: dict[str, type[Source[Any]]] = {
    "rezolve": RezolveSource,
    "azure_table": AzureTableSource,
}
KINDS = tuple(SOURCE_TYPES)

AnySourceConfig = Annotated[RezolveConfig | AzureTableConfig, Field(discriminator="kind")]


def build_source(config: AnySourceConfig) -> Source[Any]:
    return SOURCE_TYPES[config.kind](config)
