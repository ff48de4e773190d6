"""The CRM on one machine without Docker: embedded Kafka (Tansu), MongoDB (nx-27017)
and S3 (SeaweedFS) as child processes, plus the services themselves (`crm up`)."""

from crm_platform.devstack.embedded import (
    IN_MEMORY,
    S3Settings,
    WeedPorts,
    s3_settings,
    start_broker,
    start_s3,
    start_store,
)
from crm_platform.devstack.processes import (
    BinaryNotFoundError,
    DevStackError,
    ManagedProcess,
    PortInUseError,
    StartupError,
    find_nx,
    find_tansu,
    find_weed,
    free_port,
    wait_until,
)
from crm_platform.devstack.runner import (
    DEFAULT_KAFKA_PORT,
    DEFAULT_MONGO_PORT,
    StackLayout,
    default_data_dir,
    load_or_create_jwt_secret,
    run_up,
)
from crm_platform.devstack.services import (
    SERVICES,
    ServiceSpec,
    service_env,
    start_service,
)
from crm_platform.devstack.supervisor import Backoff, Supervisor, read_status
from crm_platform.kafka import ensure_topics

__all__ = [
    "DEFAULT_KAFKA_PORT",
    "DEFAULT_MONGO_PORT",
    "IN_MEMORY",
    "SERVICES",
    "Backoff",
    "BinaryNotFoundError",
    "DevStackError",
    "ManagedProcess",
    "PortInUseError",
    "S3Settings",
    "ServiceSpec",
    "StackLayout",
    "StartupError",
    "Supervisor",
    "WeedPorts",
    "default_data_dir",
    "ensure_topics",
    "find_nx",
    "find_tansu",
    "find_weed",
    "free_port",
    "load_or_create_jwt_secret",
    "read_status",
    "run_up",
    "s3_settings",
    "service_env",
    "start_broker",
    "start_s3",
    "start_service",
    "start_store",
    "wait_until",
]
