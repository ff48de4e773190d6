"""The home page: who is signed in, and the way into each page group they may use."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.home.routes import router
from crm_console.registry import MenuEntry, PageGroup

GROUP = PageGroup(
    name="home",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="home.menu", href="/", order=0),),
)
