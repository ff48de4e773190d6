"""Read copies of other services' aggregates, fed only by their events.

A service that needs another service's data keeps its own copy, applied by the
source aggregate's version (:func:`crm_platform.consumer.apply_versioned`), and
never calls the owning service on a request path nor reads its database.
``customers.CustomerReadModel`` is the copy of the customers service's customers.
"""

from crm_platform.readmodels.customers import CustomerEvent, CustomerReadModel

__all__ = ["CustomerEvent", "CustomerReadModel"]
