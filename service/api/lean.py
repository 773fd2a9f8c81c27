"""A leaner request handler for the hot lease endpoints, behind FastAPI's own route class.

FastAPI's request handler is generic: on every request it re-derives, for each node of the
route's dependency tree, how to read, validate and cache it (aliases, sequence checks, scope
keys, content-type parsing, telemetry hooks). On the calls a worker makes all the time (ask,
heartbeat, report, complete) that costs about 0.4 ms of the event loop's time per request on
the bench machine, as much as the database work of a heartbeat.

:class:`LeanRoute` is an :class:`~fastapi.routing.APIRoute` (the documented extension point:
``APIRouter(route_class=...)``), so the route, its OpenAPI entry and its dependencies are
declared as for any route. When the route is built it plans, once, how to call it: which path
parameters, headers and body model to validate, with the very validators FastAPI uses (each
parameter's ``ModelField``), and which dependencies to call in FastAPI's order, with its
per-request cache. Only simple routes are planned: path and header parameters, one JSON body
model, ``Request``, plain or ``async`` dependencies without ``yield``, and an endpoint that
returns a :class:`~starlette.responses.Response`; any other route keeps FastAPI's handler.

On each request the plan is the happy path only. A request it does not take, before anything
with an effect has run, goes to FastAPI's own handler for the same route (the body is cached on
the request): a content type other than ``application/json``, a body that is not JSON, any
parameter or body that fails validation, dependency overrides (tests), FastAPI's telemetry on.
So every error a client can cause is FastAPI's own, in the same order (``401`` before ``422``
where FastAPI does that), and ``tests/api/test_lean_route.py`` compares the two handlers answer
for answer.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import fastapi.routing
from fastapi.concurrency import run_in_threadpool
from fastapi.params import Form, Header, Path
from fastapi.routing import APIRoute
from fastapi.telemetry import get_telemetry_data
from starlette.requests import Request
from starlette.responses import Response

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

_JSON = "application/json"
LEAN_SWITCH = "lean_handlers"
"""``app.state.lean_handlers = False`` sends every request to FastAPI's own handler."""
# What a dependant may ask for that the lean handler does not provide.
_UNREAD = (
    "query_params",
    "cookie_params",
    "websocket_param_name",
    "response_param_name",
    "background_tasks_param_name",
    "security_scopes_param_name",
    "own_oauth_scopes",
    "parent_oauth_scopes",
)


class _Unplannable(Exception):
    """The route uses something the lean handler does not do; FastAPI's handler serves it."""


@dataclass(frozen=True)
class _Param:
    """A path or header parameter: where to read it and the field that validates it."""

    field: Any  # fastapi's ModelField
    key: str  # the path parameter's name, or the header's (lower-case)
    in_path: bool


@dataclass(frozen=True)
class _Node:
    """One callable of the dependency tree (the endpoint is the root)."""

    call: Callable[..., Any]
    name: str | None
    is_async: bool
    use_cache: bool
    params: tuple[_Param, ...]
    request_params: tuple[str, ...]  # parameters given the Request (or HTTPConnection)
    children: tuple[_Node, ...]


@dataclass(frozen=True)
class _Plan:
    root: _Node
    body_field: Any | None  # ModelField of the one JSON body parameter
    body_name: str | None


class LeanRoute(APIRoute):
    """An API route served by a planned happy path when it is simple enough (module doc)."""

    def get_route_handler(self) -> Handler:
        stock = super().get_route_handler()
        route = _effective_route(self)
        try:
            plan = _plan(route)
        except _Unplannable:
            return stock
        except Exception:  # FastAPI's internals moved: serve the route as FastAPI does
            logger.warning("no lean handler for %s: FastAPI's is used", self.path, exc_info=True)
            return stock
        provider = getattr(route, "dependency_overrides_provider", None)
        return functools.partial(_handle, plan, stock, provider)


def _effective_route(route: APIRoute) -> Any:
    """The route as included in its app. FastAPI builds an included route's handler while a
    context variable holds the inclusion (prefix, the including router's dependencies); the
    plan must use that context's dependant, as FastAPI's handler does."""
    context = fastapi.routing._effective_route_context_var.get()
    if context is not None and context.original_route is route:
        return context
    return route


async def _handle(plan: _Plan, stock: Handler, provider: Any, request: Request) -> Response:
    """Serve ``request`` by the plan, or hand it to ``stock`` before anything has run."""
    if (
        not getattr(request.app.state, LEAN_SWITCH, True)
        or getattr(provider, "dependency_overrides", None)
        or get_telemetry_data() is not None
    ):
        return await stock(request)
    values: dict[int, dict[str, Any]] = {}
    body: Any = None
    if plan.body_field is not None:
        headers = request.headers
        if headers.get("content-type") != _JSON or "content-length" not in headers:
            return await stock(request)
        try:
            raw = await request.json()  # cached on the request for FastAPI's handler
        except Exception:
            return await stock(request)
        body, errors = plan.body_field.validate(raw, {}, loc=("body",))
        if errors:
            return await stock(request)
    if not _validate(plan.root, request, values):
        return await stock(request)
    # From here on the request is ours: dependencies and endpoint run once, in FastAPI's order.
    cache: dict[int, Any] = {}
    kwargs = await _arguments(plan.root, request, values, cache)
    if plan.body_name is not None:
        kwargs[plan.body_name] = body
    if plan.root.is_async:
        response = await plan.root.call(**kwargs)
    else:
        response = await run_in_threadpool(plan.root.call, **kwargs)
    if not isinstance(response, Response):
        raise TypeError(f"{plan.root.call!r} returned {type(response).__name__}, not a Response")
    return response


def _validate(node: _Node, request: Request, values: dict[int, dict[str, Any]]) -> bool:
    """Validate every path and header parameter of the tree; False at the first that fails."""
    for child in node.children:
        if not _validate(child, request, values):
            return False
    own: dict[str, Any] = {}
    for param in node.params:
        source = request.path_params if param.in_path else request.headers
        raw = source.get(param.key)
        if raw is None:
            if param.field.field_info.is_required():
                return False
            value: Any = copy.deepcopy(param.field.default)
            if param.field.field_info.validate_default:
                value, errors = param.field.validate(value, {}, loc=())
                if errors:
                    return False
        else:
            value, errors = param.field.validate(raw, {}, loc=())
            if errors:
                return False
        own[param.field.name] = value
    values[id(node)] = own
    return True


async def _arguments(
    node: _Node, request: Request, values: dict[int, dict[str, Any]], cache: dict[int, Any]
) -> dict[str, Any]:
    """The keyword arguments of ``node``: its dependencies solved first, depth first, each
    callable once per request unless it opts out of the cache (as FastAPI does, a cached
    dependency's own dependencies are still solved)."""
    kwargs: dict[str, Any] = {}
    for child in node.children:
        key = id(child.call)
        child_kwargs = await _arguments(child, request, values, cache)
        if child.use_cache and key in cache:
            solved = cache[key]
        else:
            if child.is_async:
                solved = await child.call(**child_kwargs)
            else:
                solved = await run_in_threadpool(child.call, **child_kwargs)
            cache.setdefault(key, solved)
        if child.name is not None:
            kwargs[child.name] = solved
    kwargs.update(values[id(node)])
    for name in node.request_params:
        kwargs[name] = request
    return kwargs


def _plan(route: Any) -> _Plan:
    dependant = route.dependant
    if getattr(route, "_embed_body_fields", False) or len(dependant.body_params) > 1:
        raise _Unplannable("an embedded or multi-field body")
    if not _returns_response(dependant.call):
        raise _Unplannable("the endpoint returns something FastAPI must serialise")
    body_field = dependant.body_params[0] if dependant.body_params else None
    if body_field is not None and (
        not _is_model(body_field) or isinstance(body_field.field_info, Form)
    ):
        raise _Unplannable("a body that is not one JSON pydantic model")
    return _Plan(
        root=_node(dependant, body_allowed=True),
        body_field=body_field,
        body_name=body_field.name if body_field is not None else None,
    )


def _node(dependant: Any, *, body_allowed: bool = False) -> _Node:
    call = dependant.call
    if call is None or _is_generator(call) or getattr(dependant, "concurrency", None):
        raise _Unplannable("a dependency with yield or a concurrency limit")
    if (dependant.body_params and not body_allowed) or any(
        getattr(dependant, unread, None) for unread in _UNREAD
    ):
        raise _Unplannable("a kind of parameter the lean handler does not read")
    params = tuple(_path_param(f) for f in dependant.path_params) + tuple(
        _header_param(f) for f in dependant.header_params
    )
    return _Node(
        call=call,
        name=dependant.name,
        is_async=_is_async(call),
        use_cache=dependant.use_cache,
        params=params,
        request_params=tuple(
            name
            for name in (dependant.request_param_name, dependant.http_connection_param_name)
            if name is not None
        ),
        children=tuple(_node(child) for child in dependant.dependencies),
    )


def _path_param(field: Any) -> _Param:
    if not isinstance(field.field_info, Path) or _is_model(field):
        raise _Unplannable("a path parameter model")
    return _Param(field, field.alias, in_path=True)


def _header_param(field: Any) -> _Param:
    info = field.field_info
    if not isinstance(info, Header) or _is_model(field):
        raise _Unplannable("a header model")
    if info.validation_alias not in (None, field.alias):
        raise _Unplannable("a header with alias choices")
    if _is_sequence(info.annotation):
        raise _Unplannable("a repeated header")
    name = field.alias
    if name == field.name and info.convert_underscores:
        name = name.replace("_", "-")
    return _Param(field, name.lower(), in_path=False)


def _is_sequence(annotation: Any) -> bool:
    """A list, tuple or set, or an optional one (FastAPI reads every value of such a header)."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return any(_is_sequence(arg) for arg in get_args(annotation))
    return (origin or annotation) in (list, tuple, set, frozenset)


def _is_model(field: Any) -> bool:
    annotation = field.field_info.annotation
    return inspect.isclass(annotation) and hasattr(annotation, "model_validate")


def _returns_response(call: Any) -> bool:
    try:
        returned = get_type_hints(call).get("return")
    except Exception:
        return False
    return inspect.isclass(returned) and issubclass(returned, Response)


def _target(call: Any) -> Any:
    if inspect.isroutine(call) or inspect.isclass(call):
        return call
    return getattr(call, "__call__", None)  # noqa: B004 - an instance with __call__


def _is_async(call: Any) -> bool:
    return not inspect.isclass(call) and inspect.iscoroutinefunction(_target(call))


def _is_generator(call: Any) -> bool:
    target = _target(call)
    return inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)
