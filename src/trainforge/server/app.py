"""The FastAPI app factory. No module globals: everything lives on ``app.state``."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request

from trainforge.backends import open_backend
from trainforge.scheduler.instances import this_machine
from trainforge.scheduler.loop import Scheduler
from trainforge.scheduler.transforms import TransformReconciler
from trainforge.server import (
    console,
    routes_agent,
    routes_costs,
    routes_endpoints,
    routes_jobs,
    routes_metrics,
    routes_remote,
    routes_roles,
    routes_transforms,
    routes_users,
)
from trainforge.server import errors as error_handlers
from trainforge.server.audit import AuditMiddleware
from trainforge.server.auth import current_user, ensure_token
from trainforge.server.console.session import ensure_console_secret
from trainforge.server.log_bus import LogBus
from trainforge.service.agent import AgentService
from trainforge.service.audit import AuditLog
from trainforge.service.costs import load_prices
from trainforge.service.jobs import JobService
from trainforge.service.keys import server_keyring
from trainforge.service.principal import ADMIN_USER
from trainforge.service.remote_keys import ensure_secret
from trainforge.service.users import UserService
from trainforge.settings import Settings
from trainforge.spec.contract import DEFAULT_BUCKET
from trainforge.storage import open_store
from trainforge.store import UserStore, open_job_store
from trainforge.version import __version__


def storage_config(settings: Settings, *, credentials: bool) -> dict[str, Any]:
    """How supervisors (``credentials=True``) and SDKs (``credentials=False``) reach the object store.

    Local: ``{"kind": "local", "root": ...}``. S3 (``TRAINFORGE_STORAGE=s3``, endpoint and region from the
    server's ``AWS_*`` environment): ``{"kind": "s3", "endpoint_url", "region", "addressing_style"}``; with
    ``credentials`` also ``"credentials": {"access_key_id", "secret_access_key", "session_token"}``, resolved
    from the server's environment or profile, for supervisors on machines without them. The SDK's config
    never holds secrets: an SDK signs with its own ``AWS_*`` credentials.
    """
    if settings.storage == "local":
        return {"kind": "local", "root": str(settings.storage_root)}
    from trainforge.storage.s3_settings import S3Settings

    s3 = S3Settings.from_env()
    if not credentials:
        return s3.to_config()
    from trainforge.storage.s3 import S3ObjectStore

    return S3ObjectStore(settings=s3).config(credentials=True)


def create_app(
    settings: Settings,
    *,
    server_url: str = "http://127.0.0.1",
    start_scheduler: bool = True,
    on_started: Callable[[], None] | None = None,
    on_stopped: Callable[[], None] | None = None,
) -> FastAPI:
    """A trainforge API app over the store and backend ``settings`` describe.

    With ``start_scheduler`` the lifespan runs the scheduler (which launches jobs whose supervisors call
    back at ``server_url``); ``on_started`` runs once the app is ready to serve, ``on_stopped`` when it stops.
    """
    home = settings.resolved_home
    home.mkdir(parents=True, exist_ok=True)
    # Startup check: the object store answers and holds the default bucket (ValidationError naming the setting).
    supervisor_storage = storage_config(settings, credentials=True)
    objects = open_store(supervisor_storage, keyring=server_keyring(settings))  # local objects encrypted at rest
    objects.ensure_bucket(DEFAULT_BUCKET)
    token = settings.token or ensure_token(settings.token_path)
    remote_secret = ensure_secret(settings.resolved_home / "remote_function.secret")
    store = open_job_store(settings.effective_database_url)
    users = UserService(store=UserStore(store.engine))
    audit = AuditLog(store=users.store)
    # The server's own token belongs to the admin (made now on an empty database): zero setup for one user.
    registered = users.register_server_token(token)
    if registered is not None:
        audit.record(
            action="RegisterServerToken",
            outcome="ok",
            user=None,
            target=registered.user,
            source="server",
            detail=f"token {registered.token_id}",
        )
    roles = routes_roles.open_roles(store.engine, account_id=settings.account_id, admin_user=ADMIN_USER)
    machine = this_machine(cpus=settings.local_cpus, gpus=settings.local_gpus, memory_gib=settings.local_memory_gib)
    backend = open_backend(settings, machine)
    prices = load_prices(settings.prices_file)  # a bad price file stops the start, naming the file and the entry
    jobs = JobService(
        store=store,
        settings=settings,
        machine=machine,
        backend=backend,
        resolve_role=roles.resolve_for_job,
        prices=prices,
    )
    log_bus = LogBus()
    scheduler = Scheduler(
        store=store,
        backend=backend,
        settings=settings,
        machine=machine,
        server_url=(settings.advertise_url or server_url).rstrip("/"),
        storage=supervisor_storage,
        wake=jobs.wake,
        remote_secret=remote_secret,
        on_change=log_bus.publish,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if start_scheduler:
            scheduler.start()
        if on_started is not None:
            on_started()
        try:
            yield
        finally:
            if start_scheduler:
                scheduler.shutdown()
            await _app.state.invocations.aclose()  # metrics counted since the last flush are written
            if on_stopped is not None:
                on_stopped()

    app = FastAPI(
        title="trainforge",
        version=__version__,
        description="Self-hosted training jobs with the SageMaker Training contract.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.token = token
    app.state.store = store
    app.state.jobs = jobs
    app.state.agent = AgentService(store=store)
    app.state.log_bus = log_bus  # the agent routes and the scheduler wake the log follow streams (server/log_bus.py)
    app.state.scheduler = scheduler
    app.state.remote_secret = remote_secret
    app.state.objects = objects
    app.state.users = users
    app.state.audit = audit
    app.state.console_secret = ensure_console_secret(home)
    error_handlers.install(app)
    app.add_middleware(AuditMiddleware)

    @app.get("/health", tags=["meta"])
    async def health() -> dict[str, Any]:
        """Liveness: no authentication."""
        return {"status": "ok", "version": __version__, "pid": os.getpid()}

    @app.get("/v1/config", tags=["meta"], dependencies=[Depends(current_user)])
    async def config(request: Request) -> dict[str, Any]:
        """What an SDK needs to know about this deployment."""
        s: Settings = request.app.state.settings
        return {
            "region": s.region,
            "account_id": s.account_id,
            "default_bucket": DEFAULT_BUCKET,
            "storage": storage_config(s, credentials=False),
            "version": __version__,
            "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        }

    app.include_router(routes_jobs.router)
    app.include_router(routes_agent.router)
    app.include_router(routes_metrics.router)
    app.include_router(routes_remote.router)
    app.include_router(routes_users.router)
    routes_costs.install(app, prices=prices)
    routes_roles.install(app, roles=roles)
    console.install(app)
    routes_endpoints.install(
        app, scheduler=scheduler, storage=supervisor_storage, resolve_role=roles.resolve_for_job, users=users.store
    )
    routes_transforms.install(app, settings=settings, machine=machine, backend=backend, wake=jobs.wake)
    scheduler.transforms = TransformReconciler(
        app.state.transforms.store, backend, settings, machine, scheduler.server_url, supervisor_storage, jobs.wake
    )
    return app
