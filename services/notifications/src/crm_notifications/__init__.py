"""The notifications service: each user's inbox, email over SMTP, and webhooks for integrators."""
