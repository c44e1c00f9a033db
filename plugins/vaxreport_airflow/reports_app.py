"""The reports page inside the Airflow UI: a small FastAPI app listing report periods and files.

Airflow does not authenticate plugin apps, so this one does it itself: HTTP Basic against the
users in VAXREPORT_REPORTS_USERS ("name:password,name:password"), compared in constant time.
No credentials: 401 with a challenge; wrong ones: 403. Files are served only from inside the
reports folder.
"""

from __future__ import annotations

import html
import os
import secrets
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials

if TYPE_CHECKING:
    from pathlib import Path

_basic = HTTPBasic(auto_error=False)


def _users() -> dict[str, str]:
    raw = os.environ.get("VAXREPORT_REPORTS_USERS", "")
    pairs = (item.split(":", 1) for item in raw.split(",") if ":" in item)
    return {name.strip(): password for name, password in pairs if name.strip() and password}


def require_user(credentials: HTTPBasicCredentials | None = Depends(_basic)) -> str:
    if credentials is None:
        raise HTTPException(401, "credentials required", headers={"WWW-Authenticate": 'Basic realm="vaxreport"'})
    known = _users().get(credentials.username)
    ok = known is not None and secrets.compare_digest(known.encode(), credentials.password.encode())
    if not ok:
        raise HTTPException(403, "not allowed")
    return credentials.username


def create_app(reports_root: Path | None = None) -> FastAPI:
    def root() -> Path:
        from vaxreport.settings import reports_dir

        return (reports_root or reports_dir()).resolve()

    app = FastAPI(title="vaxreport reports", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def index(user: str = Depends(require_user)) -> str:
        base = root()
        sections = {
            "Dagliga körningar / Daily runs": sorted((p for p in base.glob("[0-9]*") if p.is_dir()), reverse=True),
            "Avstämning / Reconciliation": sorted(base.glob("reconciliation/*"), reverse=True),
            "Veckosammanställning / Weekly digest": sorted(base.glob("digest/*"), reverse=True),
        }
        parts = [f"<h1>vaxreport</h1><p>{html.escape(user)}</p>"]
        for title, periods in sections.items():
            parts.append(f"<h2>{html.escape(title)}</h2><ul>")
            for period in periods:
                files = sorted(f for f in period.rglob("*") if f.is_file())
                links = " ".join(
                    f'<a href="files/{html.escape(str(f.relative_to(base)))}">{html.escape(f.name)}</a>' for f in files
                )
                parts.append(f"<li><strong>{html.escape(period.name)}</strong> {links}</li>")
            parts.append("</ul>")
        return '<!doctype html><html lang="sv"><meta charset="utf-8">' + "".join(parts) + "</html>"

    @app.get("/files/{path:path}")
    def file(path: str, user: str = Depends(require_user)) -> FileResponse:
        base = root()
        target = (base / path).resolve()
        if not target.is_relative_to(base) or not target.is_file():
            raise HTTPException(404, "no such report file")
        return FileResponse(target)

    return app
