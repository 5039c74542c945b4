"""`/openapi.json` and `/docs`: the document and a Swagger UI page that needs no internet.

The page's JavaScript and CSS come from the `swagger-ui-py` package's static files, served by
this app under /docs/assets/ (two fixed files; no request value ever names a file).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

from xscore.api.errors import ErrorCode, XscoreError
from xscore.gateway.endpoint import GatewayState
from xscore.gateway.media import Negotiated
from xscore.gateway.openapi import document

ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>xscore API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""


def assets_dir() -> Path | None:
    spec = importlib.util.find_spec("swagger_ui")  # located without importing it (and its jinja2)
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "static"
    return directory if all((directory / name).is_file() for name in ASSETS) else None


async def openapi(request: Request, negotiated: Negotiated, state: GatewayState) -> Response:
    return JSONResponse(document(auth=state.auth_token is not None))


async def page(request: Request, negotiated: Negotiated, state: GatewayState) -> Response:
    return HTMLResponse(_PAGE)


async def asset(request: Request, negotiated: Negotiated, state: GatewayState) -> Response:
    name = request.path_params["name"]
    directory = assets_dir()
    if name not in ASSETS or directory is None:
        raise XscoreError(ErrorCode.NOT_FOUND, f"no documentation asset {name!r}"
                          + ("" if directory else " (install swagger-ui-py)"))
    return FileResponse(directory / name, media_type=ASSETS[name],
                        headers={"Cache-Control": "public, max-age=86400"})
