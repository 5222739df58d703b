"""The ingest stage: a source's image/mask pairs added to the dataset at ``data.root``
(``lerenet/data/ingest.py`` does the work; layouts in ``lerenet/data/layouts.py``)."""

from __future__ import annotations

from typing import Any

from lerenet.config.schema import Params
from lerenet.data.ingest import IngestReport


def run(params: Params, source: str, **options: Any) -> IngestReport:
    """Ingest ``source`` (a folder, an archive or an s3:// URI) with the data root, pixel
    limit and workers from ``params``; ``options``: layout, class_map, class_name, …"""
    from lerenet.data.ingest import ingest_with_params

    return ingest_with_params(source, params, **options)
