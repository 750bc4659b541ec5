"""The page's thumbnails: each image embedded once, however many head cards show it."""

from __future__ import annotations

import re

from ccs_dist.report.load import RunData


class ThumbIndex:
    """Image id -> position in the page's one list of thumbnails (each image embedded once, however many heads show it)."""

    def __init__(self, uris: dict[str, str]):
        self.uris = uris
        self.order: dict[str, int] = {}

    def ref(self, image_id: str) -> int:
        return self.order.setdefault(image_id, len(self.order))

    def payload(self) -> list[list[str | None]]:
        return [[image_id, self.uris.get(image_id)] for image_id in self.order]


_DATA_URI = re.compile(r"data:image/(webp|png|jpeg);base64,[A-Za-z0-9+/=]+")


def thumbnail_index(data: RunData) -> ThumbIndex:
    """The run's thumbnails; anything that is not a base64 image data URI is dropped (it could never be an image)."""
    df = data.get("head_thumbnails")
    uris: dict[str, str] = {}
    if df is not None:
        for image_id, uri in df.select("image_id", "data_uri").iter_rows():
            if isinstance(uri, str) and _DATA_URI.fullmatch(uri) and image_id is not None:
                uris.setdefault(str(image_id), uri)
    return ThumbIndex(uris)
