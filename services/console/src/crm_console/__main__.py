"""``crm-console`` / ``python -m crm_console``: serve the web console (settings from CRM_* variables)."""

from __future__ import annotations

from crm_console.main import create_app
from crm_console.settings import ConsoleSettings
from crm_platform.serving import serve


def main() -> None:
    settings = ConsoleSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
