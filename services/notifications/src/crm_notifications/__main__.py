"""Run the notifications service: ``python -m crm_notifications`` (settings from CRM_* variables).

``crm-notifications smtp-sink [--host H] [--port P] [--maildir DIR]`` runs a local SMTP sink
that accepts every mail, prints it and (optionally) stores it: the embedded default's mail server.
"""

from __future__ import annotations

import sys

from crm_notifications.main import create_app
from crm_notifications.settings import NotificationSettings
from crm_platform.serving import serve


def main() -> None:
    if sys.argv[1:2] == ["smtp-sink"]:
        from crm_notifications.smtp_sink import main as sink_main

        sink_main(sys.argv[2:])
        return
    settings = NotificationSettings()
    serve(create_app(settings), settings)  # forwarded headers from CRM_TRUSTED_PROXIES only


if __name__ == "__main__":
    main()
