"""Event contracts: each service's event types and their data models, defined once.

Publishers build events from these; consumers in other services parse them with
the same models. Importing a module registers its types in ``crm_platform.events.registry``.
"""
