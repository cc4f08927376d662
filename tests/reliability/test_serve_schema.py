"""`facegan serve` under Schemathesis: generated requests from its own OpenAPI schema never get a 5xx.

Every response must also match the schema (status code, content type, JSON body); invalid values
must be refused with 4xx, not crash the server.

Schemathesis is used through its Python API (`APIOperation.as_strategy` with Hypothesis' `@given`),
not through its pytest plugin: the plugin reaches into pytest internals and broke with pytest 9.2
(`'Function' object has no attribute '_nodeid'`), and pyproject disables it (`-p no:schemathesis`).
"""
import pytest

import facegan

schemathesis = pytest.importorskip("schemathesis", reason="pip install -e '.[test]' brings Schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from facegan.serve import create_app  # noqa: E402

API_PATHS = {"/api/info", "/api/face.png", "/api/grid.png", "/api/morph.gif"}
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]


@pytest.fixture(scope="module")
def api_operations(trained_run):
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(facegan.load(trained_run)))
    return [result.ok() for result in schema.get_all_operations()]


def check_operation(operation) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def never_crashes(case):
        response = case.call()
        assert response.status_code < 500, f"{case.method} {case.formatted_path} {case.query}: {response.status_code}"
        case.validate_response(response, checks=CHECKS)

    never_crashes()


def test_the_schema_lists_every_api_endpoint(api_operations):
    assert {operation.path for operation in api_operations} == API_PATHS


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(API_PATHS))
def test_generated_requests_never_crash_the_server(api_operations, path):
    (operation,) = [operation for operation in api_operations if operation.path == path]
    check_operation(operation)
