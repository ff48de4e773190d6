"""Lead CSV import (导入线索): upload, the dry run's report row by row, then the import for real."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.leadimport.routes import router
from crm_console.registry import PageGroup

# No menu entry: the leads list's "Import" button (leads:import) leads here.
GROUP = PageGroup(name="leadimport", router=router, directory=Path(__file__).parent)
