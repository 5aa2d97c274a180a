"""Pull mode: follow EPM jobs whose id EPMPulse has, and feed the store.

A job is followed when a webhook update leaves a row ``Loading`` with a numeric
``job_id`` for an app with an ``epm`` block in apps.json, or on request
(``POST /api/v1/watch``, ``/epmpulse watch``). Pull mode is on when apps.json has an
``epm`` block and EPM credentials are configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bot.settings import Settings
from epm.config import EpmBlock, Product, effective_product
from handlers.watch import WatchRejected
from store.catalog import AppConfig, Catalog
from store.models import PULL_SOURCE, Change, Snapshot, Status, Update
from store.store import StatusStore

# The EPM client stack (sign-in, REST client, poller) is imported where pull mode
# starts, so that importing this module for its helpers stays cheap.
if TYPE_CHECKING:
    from epm.auth import EpmAuthSettings
    from epm.client import EpmClient
    from epm.poller import JobPoller
    from epm.status import JobState
    from epm.tokens import TokenStore

log = logging.getLogger(__name__)

TOKENS_FILE = "epm_tokens.json"
WATCH_FILE = "epm_watch.json"
PRODUCTS = ("planning", "fccs", "tax", "freeform", "data_integration", "arcs")


def epm_auth_settings(settings: Settings) -> EpmAuthSettings:
    from epm.auth import EpmAuthSettings

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    return EpmAuthSettings(
        token_url=settings.epm_token_url,
        client_id=settings.epm_client_id,
        client_secret=secret(settings.epm_client_secret),
        scope=settings.epm_scope,
        refresh_token=secret(settings.epm_refresh_token),
        username=settings.epm_username,
        password=secret(settings.epm_password),
    )


def token_store(settings: Settings) -> TokenStore:
    from epm.tokens import TokenStore

    return TokenStore(settings.secrets_dir)


def auth_method_summary(settings: Settings) -> str | None:
    """Return which EPM sign-in method pull mode will use, for check-config."""
    from epm.auth import choose_auth_method

    method = choose_auth_method(
        epm_auth_settings(settings), token_store(settings).load()
    )
    names = {
        "refresh_token": "OAuth refresh token (stored by epm-login or "
        "EPM_REFRESH_TOKEN)",
        "client_credentials": "OAuth client credentials",
        "basic": "HTTP Basic (EPM_USERNAME)",
    }
    return names.get(method) if method else None


def epm_block(catalog: Catalog, app: str) -> EpmBlock | None:
    """Return the validated ``epm`` block of an app, or None when it has none."""
    config = catalog.app(app)
    if config is None or config.epm is None:
        return None
    return EpmBlock.model_validate(config.epm)


def product_for(
    catalog: Catalog, app: str, domain: str, block: EpmBlock, source: str | None
) -> Product:
    """Return the product whose API follows the job: the domain's ``product``, else
    an update's ``source`` naming a product, else the app's."""
    config = catalog.app(app)
    domain_config = config.domain(domain) if config else None
    override = getattr(domain_config, "product", None) if domain_config else None
    if override is None and source in PRODUCTS:
        override = source
    if override is not None:
        return effective_product(block, _override(override))
    return block.product


def _override(product: str) -> Any:
    from epm.config import EpmDomainOverride

    return EpmDomainOverride(product=product)


class PullMode:
    """The EPM poller as a service component."""

    def __init__(
        self,
        settings: Settings,
        store: StatusStore,
        catalog: Callable[[], Catalog],
        *,
        on_maintenance: Callable[[bool], None] | None = None,
        on_admin_problem: Callable[[str, str | None], Awaitable[None] | None]
        | None = None,
        trace_configs: list[Any] | None = None,
    ) -> None:
        self.settings = settings
        self.trace_configs = trace_configs
        self.store = store
        self.catalog = catalog
        self.on_maintenance = on_maintenance
        self.on_admin_problem = on_admin_problem
        self.client: EpmClient | None = None
        self.poller: JobPoller | None = None
        self.maintenance = False

    async def start(self) -> None:
        from epm.auth import build_auth
        from epm.client import EpmClient
        from epm.poller import JobPoller

        auth = await asyncio.to_thread(
            build_auth, epm_auth_settings(self.settings), token_store(self.settings)
        )
        self.client = EpmClient(auth, trace_configs=self.trace_configs)
        self.poller = JobPoller(
            self.client,
            self.settings.data_dir / WATCH_FILE,
            on_status=self._on_status,
            on_gave_up=self._on_gave_up,
            on_not_found=self._on_not_found,
            on_maintenance=self._on_maintenance,
            on_admin_problem=self._on_problem,
            poll_seconds=self.settings.epm_poll_seconds,
            maintenance_retry_seconds=self.settings.epm_maintenance_retry_seconds,
        )
        await self.poller.start()
        log.info(
            "EPM pull mode on (%s), polling every %.0f s",
            auth.method,
            self.settings.epm_poll_seconds,
        )

    async def stop(self) -> None:
        if self.poller is not None:
            await self.poller.stop()
        if self.client is not None:
            await self.client.close()

    # --- following jobs ------------------------------------------------------

    def on_store_change(self, snapshot: Snapshot, changes: Sequence[Change]) -> None:
        """Follow the job of every row that a push left Loading with an EPM job id."""
        for change in changes:
            after = change.after
            if (
                not change.changed
                or after is None
                or after.status is not Status.LOADING
                or after.source == PULL_SOURCE
                or not (after.job_id or "").isdigit()
            ):
                continue
            asyncio.get_running_loop().create_task(
                self._watch_quietly(
                    after.app, after.domain, after.job_id or "", change.update.source
                )
            )

    async def _watch_quietly(
        self, app: str, domain: str, job_id: str, source: str
    ) -> None:
        try:
            await self.watch(app, domain, job_id, source)
        except WatchRejected as exc:
            if exc.field != "app":
                log.warning("not following %s/%s job %s: %s", app, domain, job_id, exc)

    async def watch(
        self, app: str, domain: str, job_id: str, source: str | None = None
    ) -> dict[str, Any]:
        """Start following a job. Raises WatchRejected naming the field at fault."""
        assert self.poller is not None
        catalog = self.catalog()
        config, block = self._epm_app(catalog, app)

        domain_config = config.domain(domain)
        if domain_config is None:
            known = ", ".join(d.name for d in config.domains)
            raise WatchRejected(
                "domain",
                domain,
                f"unknown domain {domain!r} of {config.name}; known: {known}",
            )
        if not job_id.isdigit():
            raise WatchRejected(
                "job_id",
                job_id,
                f"job_id {job_id!r} is not an EPM job id; EPM job ids are numbers "
                "such as 1234",
            )

        product = product_for(catalog, config.name, domain_config.name, block, source)
        max_runtime = catalog.max_runtime(config.name, domain_config.name)
        await self.poller.watch(
            config.name,
            domain_config.name,
            job_id,
            block,
            product,
            max_runtime or self.settings.stuck_after,
        )
        return {
            "app": config.name,
            "domain": domain_config.name,
            "job_id": job_id,
            "product": product,
        }

    @staticmethod
    def _epm_app(catalog: Catalog, app: str) -> tuple[AppConfig, EpmBlock]:
        """Return an app's settings and its epm block, or raise WatchRejected."""
        config = catalog.app(app)
        if config is None:
            raise WatchRejected(
                "app",
                app,
                f"unknown app {app!r}: pull mode follows apps listed in apps.json",
            )
        try:
            block = epm_block(catalog, config.name)
        except ValidationError as exc:
            raise WatchRejected(
                "app",
                app,
                f"the epm block of {config.name} in apps.json is invalid: "
                f"{exc.errors()[0]['msg']}",
            ) from exc
        if block is None:
            raise WatchRejected(
                "app",
                app,
                f"{config.name} has no epm block in apps.json; add url, product and "
                "application to follow its jobs",
            )
        return config, block

    # --- poller callbacks ----------------------------------------------------

    async def _on_status(
        self, app: str, domain: str, job_id: str, state: JobState
    ) -> None:
        now = datetime.now(UTC)
        update = Update(
            app=app,
            domain=domain,
            status=state.status,
            received_at=now,
            timestamp=now,
            job_id=job_id,
            message=state.message,
            source=PULL_SOURCE,
        )
        await self.store.apply([update])

    def _on_gave_up(self, app: str, domain: str, job_id: str) -> None:
        log.warning(
            "EPM job %s of %s/%s passed its maximum runtime; no longer "
            "polled, the row shows as stuck",
            job_id,
            app,
            domain,
        )

    def _on_not_found(self, app: str, domain: str, job_id: str) -> None:
        log.warning(
            "EPM returned 404 for job %s of %s/%s; dropped, the row keeps "
            "its pushed status",
            job_id,
            app,
            domain,
        )

    def _on_maintenance(self, active: bool) -> None:
        self.maintenance = active
        log.info("EPM maintenance window %s", "started" if active else "ended")
        if self.on_maintenance is not None:
            self.on_maintenance(active)

    async def _on_problem(self, key: str, text: str | None) -> None:
        if text is None:
            log.info("EPM problem %s cleared", key)
        else:
            log.error("EPM problem %s: %s", key, text)
        if self.on_admin_problem is not None:
            result = self.on_admin_problem(key, text)
            if result is not None:
                await result
