"""`relay.api.deps.in_thread`: a blocking endpoint made a coroutine still runs off the event loop,
and FastAPI still reads its parameters, checks its result and documents both."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from fastapi.exceptions import ResponseValidationError
from pydantic import BaseModel

from relay.api.deps import in_thread


class Out(BaseModel):
    on_loop: bool
    n: int


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def app() -> FastAPI:
    api = FastAPI()

    @api.get("/work")
    @in_thread
    def work(n: int) -> Out:
        return Out(on_loop=_on_loop(), n=n)

    @api.get("/wrong")
    @in_thread
    def wrong() -> Out:
        return cast(Any, {"on_loop": "neither", "n": "x"})

    return api


def get(path: str, **params: Any) -> httpx.Response:
    async def request() -> httpx.Response:
        transport = httpx.ASGITransport(app=app())
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
            return await client.get(path, params=params)

    return asyncio.run(request())


def test_the_endpoint_runs_in_a_worker_thread_with_its_parameters_read() -> None:
    answer = get("/work", n=3)
    assert answer.status_code == 200
    assert answer.json() == {"on_loop": False, "n": 3}
    assert get("/work", n="three").status_code == 422


def test_the_result_is_still_checked_against_the_response_model() -> None:
    with pytest.raises(ResponseValidationError):
        get("/wrong")


def test_the_openapi_document_describes_the_wrapped_endpoint() -> None:
    operation = app().openapi()["paths"]["/work"]["get"]
    assert [(p["name"], p["in"], p["required"]) for p in operation["parameters"]] == [("n", "query", True)]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Out"}
