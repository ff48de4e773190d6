"""The directory's use cases wired together: what the HTTP layer, the start-up hook and the CLI use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from crm_directory.adapters.credentials import RefreshTokens, SignInThrottle
from crm_directory.adapters.repository import DirectoryRepository
from crm_directory.adapters.signing import TokenSigner
from crm_directory.application.auth import Authenticator
from crm_directory.application.departments import Departments
from crm_directory.application.publishing import EventFactory
from crm_directory.application.roles import Roles
from crm_directory.application.users import Users
from crm_directory.domain.passwords import Argon2Parameters, Passwords
from crm_directory.settings import DirectorySettings
from crm_platform.clock import Clock

Document = dict[str, Any]


class Directory:
    def __init__(
        self,
        db: AsyncDatabase[Document],
        clock: Clock,
        settings: DirectorySettings,
        source: str,
        wake_relay: Callable[[], None] = lambda: None,
    ) -> None:
        s = settings
        self.settings = settings
        self.clock = clock
        self.repo = DirectoryRepository(db, clock, wake_relay)
        self.tokens = RefreshTokens(db)
        self.throttle = SignInThrottle(db)
        self.passwords = Passwords(
            Argon2Parameters(
                s.directory_argon2_time_cost, s.directory_argon2_memory_kib, s.directory_argon2_parallelism
            )
        )
        private_key = s.directory_jwt_private_key.get_secret_value() if s.directory_jwt_private_key else None
        self.signer = TokenSigner(s, private_key, timedelta(minutes=s.directory_access_token_minutes))
        events = EventFactory(source, clock)
        self.roles = Roles(self.repo, events, clock)
        self.users = Users(self.repo, self.tokens, self.passwords, s, events, clock, self.roles)
        self.departments = Departments(self.repo, self.users, s, events, clock)
        self.auth = Authenticator(
            self.repo, self.users, self.tokens, self.throttle, self.passwords, self.signer, s, clock, events
        )

    async def ensure_indexes(self) -> None:
        await self.repo.ensure_indexes()
        await self.tokens.ensure_indexes()
        await self.throttle.ensure_indexes()
