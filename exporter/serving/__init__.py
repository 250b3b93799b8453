"""The HTTP side: an aiohttp server built for hostile networks, reading the exporter's snapshot."""
