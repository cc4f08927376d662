"""`facegan serve` under Schemathesis: generated requests from its own OpenAPI schema never get a 5xx.

Every response must also match the schema (status code, content type, JSON body); invalid values
must be refused with 4xx, not crash the server.
"""
import pytest

import facegan

schemathesis = pytest.importorskip("schemathesis", reason="pip install -e '.[test]' brings Schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from facegan.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(trained_run):
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(facegan.load(trained_run)))


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_never_crash_the_server(case):
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.formatted_path} {case.query}: {response.status_code}"
    case.validate_response(response, checks=[checks.not_a_server_error, checks.status_code_conformance,
                                             checks.content_type_conformance, checks.response_schema_conformance])
