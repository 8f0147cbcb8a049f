"""The workspace pages under `/app`: the book, an account, the priority map, learned vs rule, overrides, the audit.

Server-rendered HTML (Jinja2, autoescaped), enhanced by htmx when scripts run and complete without them. Every
asset ships in the package; every response carries a Content-Security-Policy that allows this origin only and no
inline script or style. Every page needs a signed-in user; writes need the session's CSRF token and the role.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles

from features.config import TIERS
from ingest.display import count, decimals, money, percent, tier_label
from serving.workspace.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    WRITERS,
    LoginThrottle,
    Session,
    SessionSigner,
    TrustedHeader,
    on_this_machine,
    session_secret,
    tokens_match,
)
from serving.workspace.pins import family_cache, pilot_cache, pin_cache
from serving.workspace.views import (
    PAGE_SIZE,
    BadQuery,
    audit_summary,
    history_chart,
    pilot_view,
    read_book_query,
    read_page,
    tier_history,
)
from workspace.errors import InvalidInput, NotAllowed, SchemaMismatch, StoreError, StoreUnavailable
from workspace.pilots import account_pilot, pilots
from workspace.store import SORTABLE, BookFilter, UserInfo, WorkspaceStore

logger = logging.getLogger("bentoml.abm_tiering")
HERE = Path(__file__).parent
# Each password check is an Argon2 hash of tens of MB: at most two at once, however many sign-ins arrive together.
PASSWORD_CHECKS = threading.BoundedSemaphore(2)
# Only this origin, no inline script or style, no plugins, no framing, forms post back here only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; worker-src 'self' blob:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
NAV = (
    ("/", "Book", "book"),
    ("/map", "Priority map", "map"),
    ("/compare", "Learned vs rule", "compare"),
    ("/overrides", "Overrides", "overrides"),
    ("/whatif", "What if", "whatif"),
    ("/audit", "Audit", "audit"),
    ("/pilots", "Pilots", "pilots"),
)
AUDIT_PAGE = 50


class NeedsSignIn(Exception):
    pass


class PageError(Exception):
    """An answer other than the page: status, heading, message and what to do."""

    def __init__(self, status: int, heading: str, message: str, fix: str = ""):
        super().__init__(message)
        self.status, self.heading, self.message, self.fix = status, heading, message, fix


@dataclass(frozen=True)
class Visitor:
    """The signed-in user of this request, with the session's CSRF token."""

    user: UserInfo
    session: Session

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def role(self) -> str:
        return self.user.role.value

    @property
    def can_pin(self) -> bool:
        return self.role in WRITERS


class Workspace:
    """What the pages share across requests: the store (opened on first use), the session signer, the login
    throttle and the trusted SSO header. Built from the settings when the first request arrives."""

    def __init__(
        self,
        open_store=None,
        secret: str | None = None,
        throttle: LoginThrottle | None = None,
        trusted: TrustedHeader | None = None,
    ):
        from ingest.settings import load_settings

        settings = load_settings()
        configured = settings.session_secret.get_secret_value() if settings.session_secret else None
        self.signer = SessionSigner(secret or session_secret(configured))
        self.throttle = throttle or LoginThrottle()
        self.trusted = trusted or TrustedHeader.parse(settings.sso_header, settings.sso_proxies)
        self._open_store = open_store or (lambda: WorkspaceStore.open())
        self._store: WorkspaceStore | None = None
        self._opening = threading.Lock()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def store(self) -> WorkspaceStore:
        """The store, opened (created and migrated if new) on first use; an unreachable or outdated one raises,
        and is tried again on the next request."""
        if self._store is None:
            with self._opening:
                if self._store is None:
                    self._store = self._open_store()
        return self._store


class SecurityHeaders:
    """The CSP and its companions on every answer; `no-store` on all but the static assets (pages hold client data).
    Plain ASGI: it never holds a response body, and a client leaving mid-answer is no error."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope["path"].startswith(f"{scope.get('root_path', '').rstrip('/')}/static/")

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if not static and "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


def _templates() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["tier_label"] = tier_label
    environment.filters["count"] = count
    environment.filters["decimals"] = decimals
    environment.filters["percent"] = percent
    environment.filters["money"] = money
    environment.filters["when"] = lambda moment: "" if moment is None else str(moment)[:16].replace("T", " ")
    environment.filters["summary"] = audit_summary
    environment.filters["q"] = lambda text: quote(str(text), safe="")
    return environment


TEMPLATES = _templates()


PLOTLY = HERE / "static" / "plotly-strict.min.js.gz"  # plotly.js-strict-dist-min 4.1.1 from npm, gzipped


def plotly_script(gzipped: bool) -> bytes:
    """plotly.js's strict bundle, which draws WebGL without `eval` (the regular bundle's WebGL needs the CSP's
    'unsafe-eval'); stored gzipped, sent so to every browser that says it accepts gzip."""
    packed = PLOTLY.read_bytes()
    return packed if gzipped else gzip.decompress(packed)


def create_app(workspace: Workspace | None = None) -> FastAPI:
    """The pages as an ASGI app, to mount at `/app`; `workspace` is built from the settings when not given."""
    shared: dict[str, Workspace] = {}
    building = threading.Lock()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Each server start reads the settings afresh (a test process starts many), and its pins with them.
        pin_cache.forget()
        pilot_cache.forget()
        family_cache.forget()
        yield
        built = shared.pop("workspace", None)
        if built is not None and workspace is None:
            built.close()

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=6)  # the map's points shrink tenfold

    def state() -> Workspace:
        if "workspace" not in shared:
            with building:
                if "workspace" not in shared:
                    shared["workspace"] = workspace or Workspace()
        return shared["workspace"]

    app.state.workspace = state

    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    # ---- rendering and errors ------------------------------------------------------------------------------------

    def render(
        request: Request, template: str, status: int = 200, visitor: Visitor | None = None, **values
    ) -> Response:
        root = _root(request)
        html = TEMPLATES.get_template(template).render(
            root=root,
            static=lambda name: f"{root}/static/{name}",
            nav=NAV,
            user=visitor.user if visitor else None,
            visitor=visitor,
            csrf_token=visitor.session.csrf if visitor else values.pop("csrf_token", ""),
            tiers=TIERS,
            **values,
        )
        response = HTMLResponse(html, status_code=status)
        pending = getattr(request.state, "new_session", None)
        if pending:
            _set_session_cookie(request, response, pending)
        return response

    def error_page(request: Request, error: PageError) -> Response:
        visitor = getattr(request.state, "visitor", None)
        return render(
            request,
            "error.html",
            error.status,
            visitor,
            title=error.heading,
            heading=error.heading,
            message=error.message,
            fix=error.fix,
        )

    @app.exception_handler(PageError)
    async def page_error(request: Request, error: PageError):
        return error_page(request, error)

    @app.exception_handler(NeedsSignIn)
    async def needs_sign_in(request: Request, _error: NeedsSignIn):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{_root(request)}/login?{urlencode({'next': target})}", status_code=303)

    @app.exception_handler(StoreUnavailable)
    @app.exception_handler(OperationalError)
    async def unavailable(request: Request, error: Exception):
        message = str(error) if isinstance(error, StoreError) else "the workspace database did not answer"
        logger.warning("workspace 503: %s", message if isinstance(error, StoreError) else type(error).__name__)
        return error_page(
            request,
            PageError(
                503,
                "The workspace database cannot be reached",
                message,
                "Nothing was changed. Try again in a moment; if it persists, check that the database is running "
                "and that TIERING_DATABASE_URL points at it.",
            ),
        )

    @app.exception_handler(SchemaMismatch)
    async def outdated(request: Request, error: SchemaMismatch):
        return error_page(request, PageError(503, "The workspace store needs an upgrade", str(error)))

    @app.exception_handler(InvalidInput)
    async def invalid(request: Request, error: InvalidInput):
        return error_page(request, PageError(400, "That request cannot be answered", str(error)))

    @app.exception_handler(NotAllowed)
    async def not_allowed(request: Request, error: NotAllowed):
        return error_page(request, PageError(403, "Not allowed", str(error)))

    @app.exception_handler(BadQuery)
    async def bad_query(request: Request, error: BadQuery):
        return error_page(request, PageError(400, "That link has a parameter the page cannot read", str(error)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        heading = "Page not found" if error.status_code == 404 else "Request refused"
        return error_page(request, PageError(error.status_code, heading, str(error.detail)))

    # ---- who is asking -------------------------------------------------------------------------------------------

    async def signed_in(request: Request) -> Visitor:
        """The signed-in user, or NeedsSignIn (a redirect to the login form). A disabled or deleted user is out."""
        workspace = state()
        store = await run_in_threadpool(workspace.store)
        session = workspace.signer.read(request.cookies.get(SESSION_COOKIE))
        proxied = workspace.trusted.user(_client(request), _headers(request)) if workspace.trusted else None
        name = proxied if proxied is not None else session.user if session is not None else None
        if name is None:
            raise NeedsSignIn()
        user = await run_in_threadpool(store.user, name)
        fresh = session is None or session.user != name or (user is not None and session.epoch != user.session_epoch)
        if proxied is not None and user is not None and fresh:
            cookie, session = workspace.signer.issue(proxied, user.session_epoch)
            request.state.new_session = cookie  # set on the page answered
        # A local_only user is out the moment a request comes from elsewhere, its session cookie notwithstanding;
        # through the SSO proxy it never comes from this machine.
        away = user is not None and user.local_only and (proxied is not None or not _local(request, workspace))
        if user is None or user.disabled or away:
            request.state.new_session = None  # no session for whom the pages refuse
            if proxied is not None:
                raise PageError(
                    403,
                    "No workspace user by that name",
                    f"Your single sign-on name {proxied!r} is not a workspace user, is disabled, or signs in "
                    "only on the service's own machine.",
                    "Ask an admin to run `tiering users add NAME --role viewer`.",
                )
            raise NeedsSignIn()
        if session is None or session.epoch != user.session_epoch:
            raise NeedsSignIn()  # signed out, a new password or disabled since it was issued: that session has ended
        visitor = Visitor(user, session)
        request.state.visitor = visitor
        return visitor

    async def posted(request: Request) -> tuple[Visitor, dict[str, str]]:
        """A form POST from a signed-in user: its fields, once the CSRF token matches the session's (else 403)."""
        visitor = await signed_in(request)
        form = await request.form()
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        if not tokens_match(fields.get("csrf_token"), visitor.session.csrf):
            raise PageError(
                403,
                "This form has expired",
                "The form was sent without its security token, or with one from another session.",
                "Reload the page and send the form again.",
            )
        return visitor, fields

    def writer(visitor: Visitor, doing: str) -> None:
        if not visitor.can_pin:
            raise PageError(
                403,
                "Not allowed",
                f"{visitor.name} is a {visitor.role}: viewers read and flag, editors and admins {doing}.",
                "Ask an admin for the editor role if you should.",
            )

    # ---- sign-in -------------------------------------------------------------------------------------------------

    @app.get("/login")
    async def login_form(request: Request, next: str = ""):
        workspace = state()
        try:  # a session the pages would refuse (a disabled user, one away from its machine) gets the form
            await signed_in(request)
        except (NeedsSignIn, PageError):
            return _login_page(request, workspace, next=next)
        return RedirectResponse(_safe_next(request, next), status_code=303)

    def _login_page(
        request: Request, workspace: Workspace, *, next: str = "", message: str = "", username: str = "", status=200
    ) -> Response:
        cookie, token = workspace.signer.login_token()
        response = render(
            request,
            "login.html",
            status,
            title="Sign in",
            csrf_token=token,
            next=next,
            message=message,
            username=username,
        )
        response.set_cookie(
            LOGIN_COOKIE,
            cookie,
            max_age=3600,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path=_root(request) or "/",
        )
        return response

    @app.post("/login")
    async def login(request: Request):
        workspace = state()
        form = await request.form()
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        expected = workspace.signer.login_token_from(request.cookies.get(LOGIN_COOKIE))
        if not tokens_match(fields.get("csrf_token"), expected):
            raise PageError(
                403,
                "This form has expired",
                "The sign-in form was sent without its security token.",
                "Open the sign-in page again and send it from there.",
            )
        name, password = fields.get("username", "").strip(), fields.get("password", "")
        store = await run_in_threadpool(workspace.store)
        await workspace.throttle.wait(name)
        local = _local(request, workspace)
        user = await run_in_threadpool(checked_password, store, name, password, local) if name and password else None
        if user is None:
            failures = workspace.throttle.failed(name)
            logger.warning("workspace sign-in failed for a user name (%d in a row for it)", failures)
            return _login_page(
                request,
                workspace,
                next=fields.get("next", ""),
                message="Wrong user name or password.",
                username=name,
                status=401,
            )
        workspace.throttle.succeeded(name)
        cookie, _ = workspace.signer.issue(user.name, user.session_epoch)
        response = RedirectResponse(_safe_next(request, fields.get("next", "")), status_code=303)
        _set_session_cookie(request, response, cookie)
        response.delete_cookie(LOGIN_COOKIE, path=_root(request) or "/")
        return response

    @app.post("/logout")
    async def logout(request: Request):
        visitor, _ = await posted(request)
        await run_in_threadpool(state().store().end_sessions, visitor.name)  # a copy of the cookie is no session now
        response = RedirectResponse(f"{_root(request)}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=_root(request) or "/")
        return response

    @app.get("/password")
    async def password_form(request: Request):
        visitor = await signed_in(request)
        return render(request, "password.html", visitor=visitor, title="Change password", message="", done=False)

    @app.post("/password")
    async def change_password(request: Request):
        visitor, fields = await posted(request)
        workspace = state()
        store = workspace.store()

        def refused(message: str, status: int = 400) -> Response:
            return render(
                request, "password.html", status, visitor, title="Change password", message=message, done=False
            )

        await workspace.throttle.wait(visitor.name)
        current = fields.get("current_password", "")
        if await run_in_threadpool(checked_password, store, visitor.name, current, _local(request, workspace)) is None:
            workspace.throttle.failed(visitor.name)
            return refused("The current password is wrong.", 401)
        workspace.throttle.succeeded(visitor.name)
        if fields.get("new_password", "") != fields.get("repeat_password", ""):
            return refused("The new password and its repetition differ.")
        try:
            await run_in_threadpool(store.set_password, visitor.name, fields.get("new_password", ""), visitor.name)
        except InvalidInput as error:
            return refused(str(error))
        # The new password ended every session of the user; this one goes on under a new cookie.
        changed = await run_in_threadpool(store.user, visitor.name)
        if changed is not None:
            request.state.new_session, session = workspace.signer.issue(visitor.name, changed.session_epoch)
            visitor = Visitor(changed, session)
        return render(request, "password.html", visitor=visitor, title="Change password", message="", done=True)

    # ---- the book ------------------------------------------------------------------------------------------------

    @app.get("/")
    async def book(request: Request):
        visitor = await signed_in(request)
        store = state().store()
        query = read_book_query(request.query_params, SORTABLE)
        scoring = await run_in_threadpool(store.latest_scoring)
        if scoring is None:
            return render(request, "empty.html", visitor=visitor, title="Book", active="book")
        where = BookFilter(**query.filters)
        page = await run_in_threadpool(
            lambda: store.book_page(
                where, sort=query.sort, direction=query.direction, page=query.page, page_size=PAGE_SIZE
            )
        )
        industries = await run_in_threadpool(store.filter_values, "industry")
        owners = await run_in_threadpool(store.filter_values, "owner")
        return render(
            request,
            "book.html",
            visitor=visitor,
            title="Book",
            active="book",
            scoring=scoring,
            page=page,
            query=query,
            industries=industries,
            owners=owners,
            sortable=SORTABLE,
            budget_total=sum(page.budget_by_tier.values()),
        )

    @app.get("/book.csv")
    async def book_csv(request: Request):
        await signed_in(request)
        store = state().store()
        query = read_book_query(request.query_params, SORTABLE)
        frame = await run_in_threadpool(store.scores_frame, None, BookFilter(**query.filters))
        from ingest.files import csv_text, neutralise_formulas

        return Response(
            csv_text(neutralise_formulas(frame)),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="book.csv"'},
        )

    # ---- an account ----------------------------------------------------------------------------------------------

    def account_page(
        request: Request, visitor: Visitor, account_id: str, *, status: int = 200, problem: str = "", form=None
    ) -> Response:
        store = state().store()
        detail = store.account(account_id)
        if detail is None:
            raise PageError(
                404,
                "No such account",
                f"{account_id!r} is not in the latest published scoring.",
                "Search the book for it by name or id.",
            )
        points = tier_history(store.tier_history(account_id))
        family = store.family(account_id)
        return render(
            request,
            "account.html",
            status,
            visitor,
            title=detail.row.get("account_name") or account_id,
            active="book",
            detail=detail,
            row=detail.row,
            history=points,
            moves=[point for point in points if point.what_changed],
            chart=history_chart(points) if points else None,
            pilot=account_pilot(store, account_id),
            family=family,
            problem=problem,
            form=form or {},
            today=date.today().isoformat(),
        )

    @app.get("/accounts/{account_id:path}")
    async def account(request: Request, account_id: str):
        visitor = await signed_in(request)
        return await run_in_threadpool(account_page, request, visitor, account_id)

    async def _write(request: Request, account_id: str, action: str) -> Response:
        visitor, fields = await posted(request)
        store = state().store()
        try:
            if action == "pin":
                writer(visitor, "pin accounts")
                await run_in_threadpool(
                    store.pin,
                    account_id,
                    fields.get("tier", ""),
                    fields.get("reason", ""),
                    fields.get("expires", "").strip() or None,
                    visitor.name,
                )
            elif action == "unpin":
                writer(visitor, "unpin accounts")
                await run_in_threadpool(store.unpin, account_id, visitor.name)
            else:
                await run_in_threadpool(store.flag, account_id, fields.get("comment", ""), visitor.name)
        except InvalidInput as error:
            problem = str(error)
            return await run_in_threadpool(
                lambda: account_page(request, visitor, account_id, status=400, problem=problem, form=fields)
            )
        if action in ("pin", "unpin"):
            await run_in_threadpool(pin_cache.refresh)  # the API answers with the new pin from the next request
        back = fields.get("back", "")
        target = back if _is_workspace_page(request, back) else None
        return RedirectResponse(target or f"{_root(request)}/accounts/{quote(account_id, safe='')}", status_code=303)

    @app.post("/accounts/{account_id:path}/pin")
    async def pin(request: Request, account_id: str):
        return await _write(request, account_id, "pin")

    @app.post("/accounts/{account_id:path}/unpin")
    async def unpin(request: Request, account_id: str):
        return await _write(request, account_id, "unpin")

    @app.post("/accounts/{account_id:path}/flag")
    async def flag(request: Request, account_id: str):
        return await _write(request, account_id, "flag")

    # ---- the priority map ----------------------------------------------------------------------------------------

    @app.get("/map")
    async def priority_map(request: Request):
        visitor = await signed_in(request)
        chosen = _tiers_of(request)
        scoring = await run_in_threadpool(state().store().latest_scoring)
        points_url = f"{_root(request)}/map/points.json" + (
            "?" + urlencode([("tier", tier) for tier in chosen]) if chosen else ""
        )
        return render(
            request,
            "map.html",
            visitor=visitor,
            title="Priority map",
            active="map",
            scoring=scoring,
            chosen=chosen,
            points_url=points_url,
            accounts_url=f"{_root(request)}/accounts/",
            plotly_url=f"{_root(request)}/plotly.min.js",
        )

    @app.get("/map/points.json")
    async def map_points(request: Request):
        await signed_in(request)
        chosen = _tiers_of(request)
        store = state().store()
        scoring = await run_in_threadpool(store.latest_scoring)
        if scoring is None:
            return JSONResponse({name: [] for name in MAP_COLUMNS})
        key = (store.url, scoring.id, scoring.published_at, tuple(sorted(chosen)))
        packed = map_cache.get(key)
        if packed is None:  # a published scoring never changes: its points are encoded once per tier filter
            packed = await run_in_threadpool(_packed_points, store, scoring.id, chosen)
            map_cache.put(key, packed)
        gzipped = "gzip" in request.headers.get("accept-encoding", "")
        return Response(
            packed if gzipped else gzip.decompress(packed),
            media_type="application/json",
            headers={"vary": "accept-encoding"} | ({"content-encoding": "gzip"} if gzipped else {}),
        )

    @app.get("/plotly.min.js")
    async def plotly(request: Request):
        await signed_in(request)
        gzipped = "gzip" in request.headers.get("accept-encoding", "")
        return Response(
            await run_in_threadpool(plotly_script, gzipped),
            media_type="text/javascript",
            headers={"cache-control": "private, max-age=86400", "vary": "accept-encoding"}
            | ({"content-encoding": "gzip"} if gzipped else {}),
        )

    # ---- learned vs rule, overrides, audit -----------------------------------------------------------------------

    @app.get("/compare")
    async def compare(request: Request):
        visitor = await signed_in(request)
        store = state().store()
        scoring = await run_in_threadpool(store.latest_scoring)
        if scoring is None:
            return render(request, "empty.html", visitor=visitor, title="Learned vs rule", active="compare")
        matrix = await run_in_threadpool(store.agreement_matrix)
        total = int(matrix.to_numpy().sum())
        agree = int(sum(matrix.loc[tier, tier] for tier in TIERS))
        return render(
            request,
            "compare.html",
            visitor=visitor,
            title="Learned vs rule",
            active="compare",
            scoring=scoring,
            matrix=matrix,
            total=total,
            agree=agree,
            link=lambda learned, rule: f"{_root(request)}/?" + urlencode({"learned_tier": learned, "rule_tier": rule}),
        )

    @app.get("/overrides")
    async def overrides(request: Request):
        visitor = await signed_in(request)
        store = state().store()
        pins = await run_in_threadpool(store.active_pins)
        flags = await run_in_threadpool(lambda: store.flags(open_only=True))
        return render(
            request,
            "overrides.html",
            visitor=visitor,
            title="Overrides",
            active="overrides",
            pins=pins.to_dict("records"),
            flags=flags,
        )

    @app.get("/audit")
    async def audit(request: Request):
        visitor = await signed_in(request)
        user = (request.query_params.get("user") or "").strip()[:200]
        account_id = (request.query_params.get("account") or "").strip()[:200]
        page = read_page(request.query_params.get("page"))
        events, total = await run_in_threadpool(
            lambda: (
                state()
                .store()
                .audit(
                    user=user or None, account_id=account_id or None, limit=AUDIT_PAGE, offset=(page - 1) * AUDIT_PAGE
                )
            )
        )
        pages = max(1, -(-total // AUDIT_PAGE))

        def link(to_page: int) -> str:
            params = {"user": user, "account": account_id, "page": str(to_page)}
            return "?" + urlencode({name: value for name, value in params.items() if value})

        return render(
            request,
            "audit.html",
            visitor=visitor,
            title="Audit",
            active="audit",
            events=events,
            total=total,
            page=page,
            pages=pages,
            link=link,
            filter_user=user,
            filter_account=account_id,
        )

    @app.get("/pilots")
    async def pilot_list(request: Request):
        visitor = await signed_in(request)
        store = state().store()
        listed = await run_in_threadpool(lambda: pilots(store))
        today = datetime.now(UTC).date()
        return render(
            request,
            "pilots.html",
            visitor=visitor,
            title="Pilots",
            active="pilots",
            pilots=[pilot_view(info, today) for info in listed],
        )

    # ---- what if: scenarios and the business configuration ---------------------------------------------------------

    def active_business(store: WorkspaceStore):
        """The business configuration the service scores with (TIERING_CONFIG, else the store's active version over
        ./tiering.yaml or the defaults) and its version."""
        from configuration.tiering import load_config
        from serving.launch import config_path
        from workspace.active import active_version_over

        path = config_path()
        base = load_config(path)
        if path is not None:
            return base, None
        config, _, version = active_version_over(base, "tiering.yaml", store)
        return config, version

    def whatif_page(
        request: Request, visitor: Visitor, form: dict[str, str] | None, status: int = 200, problem: str = ""
    ) -> Response:
        from serving.workspace import scenarios

        store = state().store()
        active, version = active_business(store)
        saved = store.scenarios()
        opened = None
        chosen = request.query_params.get("scenario", "")
        if form is None and chosen.isdigit():
            opened = next((found for found in saved if found.id == int(chosen)), None)
            if opened is None:
                raise PageError(404, "No such scenario", f"No saved scenario has id {chosen}.")
        result = None
        values = scenarios.field_values(active)
        try:
            if opened is not None:
                draft = opened.configuration
            elif form is not None:
                draft = scenarios.draft_from_form(form, active)
            else:
                draft = {}
            scenario = scenarios.scenario_config(active, draft, "the scenario")
            values = scenarios.field_values(scenario)
            if draft or form is not None:
                result = scenarios.preview(store, active, scenario)
        except scenarios.FormProblem as error:
            problem, status = str(error), 400
            values = {**values, **(form or {})}
        return render(
            request,
            "whatif.html",
            status,
            visitor,
            title="What if",
            active="whatif",
            values=values,
            weight_fields=scenarios.WEIGHT_FIELDS,
            split_fields=scenarios.SPLIT_FIELDS,
            tier_names=[name for name in TIERS if name != "untiered"],
            result=result,
            movers=scenarios.moves_shown(result).to_dict("records") if result else [],
            problem=problem,
            scenarios=saved,
            opened=opened,
            versions=store.config_versions(),
            active_version=version,
            is_admin=visitor.role == "admin",
            name=(form or {}).get("name", opened.name if opened else ""),
        )

    @app.get("/whatif")
    async def whatif(request: Request):
        visitor = await signed_in(request)
        form = dict(request.query_params) if request.query_params.get("preview") else None
        return await run_in_threadpool(whatif_page, request, visitor, form)

    @app.post("/whatif/save")
    async def whatif_save(request: Request):
        from serving.workspace import scenarios

        visitor, fields = await posted(request)
        writer(visitor, "save scenarios")
        store = state().store()
        active, version = await run_in_threadpool(active_business, store)
        try:
            draft = scenarios.draft_from_form(fields, active)
            scenario = scenarios.scenario_config(active, draft, "the scenario")
            result = await run_in_threadpool(scenarios.preview, store, active, scenario)
        except scenarios.FormProblem as error:
            return await run_in_threadpool(whatif_page, request, visitor, fields, 400, str(error))
        summary = None
        if result is not None:
            summary = {
                "tiers": result.comparison.tiers.to_dict("records"),
                "moves": len(result.comparison.moves),
                "changes": result.changes,
            }
        scenario_id = await run_in_threadpool(
            lambda: store.save_scenario(
                fields.get("name", ""),
                draft,
                summary,
                visitor.name,
                base_version_id=version,
                scoring_id=result.scoring.id if result else None,
            )
        )
        return RedirectResponse(f"{_root(request)}/whatif?scenario={scenario_id}", status_code=303)

    def admin(visitor: Visitor, doing: str) -> None:
        if visitor.role != "admin":
            raise PageError(
                403,
                "Not allowed",
                f"{visitor.name} is a {visitor.role}: only admins {doing}.",
                "Save the scenario and ask an admin to publish it.",
            )

    def refresh_followers() -> None:
        from serving.champion import refresh_followers as look_again

        look_again()

    def log_version(found) -> None:
        from scoring.registry import log_config_version

        try:
            log_config_version(
                found.id, found.configuration, found.changes, found.published_by, found.note, found.restored_from
            )
        except Exception as error:  # the store holds the version; MLflow's copy is a record, never a reason to fail
            logger.warning("configuration version %s was not logged to MLflow: %s", found.id, error)

    @app.post("/whatif/publish")
    async def whatif_publish(request: Request):
        from configuration.tiering import business_part
        from serving.workspace import scenarios

        visitor, fields = await posted(request)
        admin(visitor, "publish configurations")
        store = state().store()
        active, _ = await run_in_threadpool(active_business, store)
        try:
            scenario = scenarios.scenario_config(active, scenarios.draft_from_form(fields, active), "the scenario")
        except scenarios.FormProblem as error:
            return await run_in_threadpool(whatif_page, request, visitor, fields, 400, str(error))
        note = fields.get("note", "") or f"published from the what-if page by {visitor.name}"
        published = await run_in_threadpool(lambda: store.publish_config(business_part(scenario), note, visitor.name))
        await run_in_threadpool(log_version, published)
        await run_in_threadpool(refresh_followers)  # the API scores with it from the next request
        return RedirectResponse(f"{_root(request)}/whatif?published={published.id}", status_code=303)

    @app.post("/whatif/restore")
    async def whatif_restore(request: Request):
        visitor, fields = await posted(request)
        admin(visitor, "restore configurations")
        version = fields.get("version", "")
        if not version.isdigit():
            raise PageError(400, "No such version", "Choose a version from the list.")
        store = state().store()
        restored = await run_in_threadpool(lambda: store.restore_config(int(version), visitor.name))
        await run_in_threadpool(log_version, restored)
        await run_in_threadpool(refresh_followers)
        return RedirectResponse(f"{_root(request)}/whatif?published={restored.id}", status_code=303)

    for route in app.routes:  # pages, not API: kept out of the service's /docs.json (and its schema fuzzing)
        if isinstance(route, APIRoute):
            route.include_in_schema = False
    return app


MAP_COLUMNS = ("account_id", "account_name", "fit", "engagement", "tier", "surge")


class PackedCache:
    """The last few encoded answers, by key (a few megabytes each at 100,000 accounts)."""

    def __init__(self, size: int = 8):
        self.size = size
        self._entries: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
            return self._entries.get(key)

    def put(self, key: tuple, value: bytes) -> None:
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


map_cache = PackedCache()


def _packed_points(store: WorkspaceStore, scoring_id: int, tiers: list[str]) -> bytes:
    """The map's points of one scoring as gzipped JSON columns; scores to hundredths (0-100 scales)."""
    points = store.map_points(scoring_id, tiers or None)
    points["fit"] = [round(value, 2) for value in points["fit"]]
    points["engagement"] = [round(value, 2) for value in points["engagement"]]
    text = json.dumps(points, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return gzip.compress(text.encode("utf-8"), compresslevel=6)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _local(request: Request, workspace: Workspace) -> bool:
    return on_this_machine(_client(request), workspace.trusted)


def _headers(request: Request) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def _tiers_of(request: Request) -> list[str]:
    chosen = [tier for tier in request.query_params.getlist("tier") if tier]
    unknown = [tier for tier in chosen if tier not in TIERS]
    if unknown:
        raise BadQuery(f"tier: {unknown[0][:40]!r} is not a tier; use one of {', '.join(TIERS)}")
    return chosen


def _is_workspace_page(request: Request, target: str) -> bool:
    """Whether a redirect target is a page of this workspace, never another site (the one rule for every redirect)."""
    root = _root(request)
    return target.startswith(f"{root}/") and not target.startswith("//") and "\\" not in target and "://" not in target


def checked_password(store: WorkspaceStore, name: str, password: str, local: bool) -> UserInfo | None:
    """`store.authenticate`, never more than PASSWORD_CHECKS at once (run in a worker thread)."""
    with PASSWORD_CHECKS:
        return store.authenticate(name, password, local)


def _safe_next(request: Request, target: str) -> str:
    """Where to go after signing in: a page of the workspace only, never another site."""
    return target if _is_workspace_page(request, target) else f"{_root(request)}/"


def _set_session_cookie(request: Request, response: Response, cookie: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=_root(request) or "/",
    )


workspace_app = create_app()
