"""Run the notifications service: ``python -m crm_notifications`` (settings from CRM_* variables).

``crm-notifications smtp-sink [--host H] [--port P] [--maildir DIR]`` runs a local SMTP sink
that accepts every mail, prints it and (optionally) stores it: the embedded default's mail server.
"""

from __future__ import annotations

import sys

import uvicorn

from crm_notifications.main import create_app
from crm_notifications.settings import NotificationSettings


def main() -> None:
    if sys.argv[1:2] == ["smtp-sink"]:
        from crm_notifications.smtp_sink import main as sink_main

        sink_main(sys.argv[2:])
        return
    settings = NotificationSettings()
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None, access_log=False
    )


if __name__ == "__main__":
    main()
