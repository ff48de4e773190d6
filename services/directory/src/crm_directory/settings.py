"""Settings of the directory service (environment, prefix ``CRM_``).

Tokens are signed with the platform's JWT settings, unchanged, so every service
verifies them with the same ``CRM_JWT_*`` variables: HS256 with ``CRM_JWT_SECRET``
(the embedded default), or RS256 with ``CRM_DIRECTORY_JWT_PRIVATE_KEY`` (PEM) here
and ``CRM_JWT_JWKS_URL=http://directory:8007/.well-known/jwks.json`` everywhere else.
RS256 without a private key means an external identity provider signs the tokens:
the directory then only holds users (fed through ``PUT /v1/users/{id}``) and refuses
sign-in.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from crm_platform.settings import ServiceSettings


class DirectorySettings(ServiceSettings):
    service_name: str = "directory"
    http_port: int = 8007
    mongo_database: str = "crm_directory"

    directory_jwt_private_key: SecretStr | None = Field(
        default=None, description="PEM private key for RS256 (with CRM_JWT_ALGORITHM=RS256)."
    )
    directory_access_token_minutes: float = Field(default=15, gt=0, description="Lifetime of access tokens.")
    directory_refresh_token_days: float = Field(default=14, gt=0, description="Lifetime of refresh tokens.")

    # Passwords: argon2id. The defaults are argon2-cffi's (RFC 9106 "low memory" profile);
    # raising them makes every older hash be rehashed at its owner's next sign-in.
    directory_argon2_time_cost: int = Field(default=3, ge=1)
    directory_argon2_memory_kib: int = Field(default=65536, ge=8)
    directory_argon2_parallelism: int = Field(default=4, ge=1)
    directory_password_min_length: int = Field(default=10, ge=8)

    # Failed sign-ins (per email, and per client address): after max_failures within the
    # window, attempts are refused (429) for base_delay, doubling with every further
    # failure up to max_delay. The per-address limit is higher because a whole office
    # often signs in from one NAT address.
    directory_signin_max_failures: int = Field(default=5, ge=1)
    directory_signin_max_failures_per_ip: int = Field(default=20, ge=1)
    directory_signin_window_seconds: float = Field(default=15 * 60, gt=0)
    directory_signin_base_delay_seconds: float = Field(default=30, gt=0)
    directory_signin_max_delay_seconds: float = Field(default=15 * 60, gt=0)
    directory_trust_forwarded_for: bool = Field(
        default=False,
        description="Replaced by CRM_TRUSTED_PROXIES; true without it stops the service at start.",
    )

    # The first administrator, on first start (printed once to stdout, never hard-coded).
    directory_bootstrap_admin_email: str | None = None
    directory_bootstrap_admin_name: str = "Administrator"
    directory_bootstrap_department_path: str = "/hq"

    # Department moves: one at a time (a lease), renewed while the move rewrites the subtree.
    directory_tree_lease_seconds: float = Field(default=60, gt=0)
    directory_tree_lock_wait_seconds: float = Field(default=10, ge=0)

    default_phone_region: str = "CN"

    # Retention of the source records (sign-in attempts here, export and import records in the
    # customers service): kept until the audit service has long consumed their events, then deleted.
    record_retention_days: float = Field(
        default=90,
        ge=1,
        description="Source records (whose events the audit log keeps) older than this many days are deleted, "
        "once their events are published.",
    )
    record_purge_enabled: bool = Field(default=True, description="Run the source records' retention purge.")
    record_purge_interval_seconds: float = Field(default=3600.0, gt=0, description="How often that purge runs.")
    record_purge_batch_size: int = Field(default=500, ge=1, le=10000, description="Records deleted per store command.")

    @model_validator(mode="after")
    def _forwarded_for_needs_named_proxies(self) -> DirectorySettings:
        # The old switch believed X-Forwarded-For from any peer, so a client could name a new
        # address on every sign-in and escape the per-address limit. Silently dropping it would
        # make every sign-in behind the proxy count against the proxy's one address (and lock
        # everyone out together), so an operator who set it is asked to name the proxies.
        if self.directory_trust_forwarded_for and not self.trusted_proxies:
            raise ValueError(
                "CRM_DIRECTORY_TRUST_FORWARDED_FOR is replaced by CRM_TRUSTED_PROXIES: list the addresses or "
                'CIDRs of the proxies in front of the service (e.g. CRM_TRUSTED_PROXIES="10.0.0.0/8"), '
                "then remove CRM_DIRECTORY_TRUST_FORWARDED_FOR"
            )
        return self
