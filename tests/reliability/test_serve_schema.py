"""`facegan serve` under Schemathesis: generated requests from its own OpenAPI schema never get a 5xx.

Every response must also match the schema (status code, content type, JSON body); invalid values
must be refused with 4xx, not crash the server. The one 5xx the server means is 503 with Retry-After, when
its queue of images is full: documented in the schema, and accepted here only as documented.

Schemathesis is used through its Python API (`APIOperation.as_strategy` with Hypothesis' `@given`),
not through its pytest plugin: the plugin reaches into pytest internals and broke with pytest 9.2
(`'Function' object has no attribute '_nodeid'`), and pyproject disables it (`-p no:schemathesis`).
"""
import threading

import pytest

import facegan

schemathesis = pytest.importorskip("schemathesis", reason="pip install -e '.[test]' brings Schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from facegan.serve import create_app  # noqa: E402

API_PATHS = {"/api/info", "/api/face.png", "/api/grid.png", "/api/morph.gif", "/api/directions", "/api/latent",
             "/api/latent-face.png", "/api/project", "/api/photo-compare.png"}
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]


@pytest.fixture(scope="module")
def api_operations(trained_run):
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(facegan.load(trained_run)))
    return [result.ok() for result in schema.get_all_operations()]


def retry_after(response) -> int:
    [seconds] = response.headers["retry-after"]  # Schemathesis keeps every header as a list
    return int(seconds)


def check_operation(operation) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def never_crashes(case):
        response = case.call()
        busy = response.status_code == 503 and retry_after(response) >= 1
        request = f"{case.method} {case.formatted_path} {case.query}"
        assert response.status_code < 500 or busy, f"{request}: {response.status_code}"
        case.validate_response(response, checks=CHECKS if not busy else CHECKS[1:])

    never_crashes()


def test_the_schema_lists_every_api_endpoint(api_operations):
    assert {operation.path for operation in api_operations} == API_PATHS


def test_a_full_queue_gets_a_503_that_matches_the_schema(trained_run):
    """While the render thread is held by one request, a second one is refused: Schemathesis' checks of status
    code, content type and body pass on that 503 (not_a_server_error aside, which refuses every 5xx)."""
    generator = facegan.load(trained_run)
    started, go = threading.Event(), threading.Event()

    class Held:
        def __getattr__(self, name):
            return getattr(generator, name)

        def faces(self, *args, **kwargs):
            started.set()
            go.wait(timeout=60)
            return generator.faces(*args, **kwargs)

    app = create_app(Held(), queue_work=1)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = {result.ok().path: result.ok() for result in schema.get_all_operations()}
    first = threading.Thread(target=lambda: operations["/api/face.png"].Case(query={"seed": 1}).call())
    first.start()
    try:
        assert started.wait(timeout=60)
        case = operations["/api/morph.gif"].Case(query={"frames": 120})
        response = case.call()
        assert response.status_code == 503 and retry_after(response) >= 1
        case.validate_response(response, checks=CHECKS[1:])
    finally:
        go.set()
        first.join(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(API_PATHS))
def test_generated_requests_never_crash_the_server(api_operations, path):
    operations = [operation for operation in api_operations if operation.path == path]  # /api/latent: GET and POST
    assert operations
    for operation in operations:
        check_operation(operation)
