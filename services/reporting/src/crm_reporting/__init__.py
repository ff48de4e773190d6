"""The reporting service: reports and KPIs projected from the other services' events."""
