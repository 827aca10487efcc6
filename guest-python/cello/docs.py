"""The docs page: Swagger UI, loaded from the Cello host that serves the
app, over the app's OpenAPI document.

The host serves Swagger UI's files at ``/_cello/swagger-ui/`` for every
component, so no app carries them and no browser fetches them from the
internet. The page asks for them by a URL relative to itself, so it finds
them under any prefix or tenant path the host serves the app at. Opened
where they cannot be had, the page lists the operations plainly instead.
"""

from __future__ import annotations

import html
import json
import posixpath
from pathlib import Path
from string import Template

#: Where the host serves Swagger UI, from its root.
SWAGGER_UI = "/_cello/swagger-ui"

#: The page, read at import: at build time, into the component's snapshot.
_PAGE = Template((Path(__file__).parent / "docs.html").read_text())


def docs_page(docs_url: str, openapi_url: str | None, prefix: str = "", title: str = "API") -> str:
    """The page served at ``docs_url`` under ``prefix`` (the path the host
    serves the app at), showing the document at ``openapi_url``."""
    here = posixpath.dirname(_join(prefix, docs_url))
    document = None
    if openapi_url:
        document = posixpath.relpath(openapi_url, posixpath.dirname(docs_url) or "/")
    return _PAGE.substitute(
        title=html.escape(f"{title} - Swagger UI"),
        assets=html.escape(posixpath.relpath(SWAGGER_UI, here)),
        # In a <script>: JSON, with `</` kept from closing it.
        document=json.dumps(document).replace("</", "<\\/"),
    )


def _join(prefix: str, path: str) -> str:
    """``prefix`` + ``path`` as one absolute path."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    return prefix + "/" + path.lstrip("/")
