from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from crm_console.sessions import Session
from crm_console.web import render, signed_in

router = APIRouter()


@router.get("/", include_in_schema=False)
async def home(request: Request, session: Annotated[Session, Depends(signed_in)]) -> HTMLResponse:
    return render(request, "home/index.html")
