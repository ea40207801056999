"""The OpenAPI documents under specs/ are what the services actually serve."""

from __future__ import annotations

import json

import pytest

from beckn.cli.openapi import openapi_path, render, service_openapi
from beckn.cli.serve import Service


@pytest.mark.parametrize("service", list(Service), ids=[s.value for s in Service])
def test_exported_openapi_is_current(service: Service) -> None:
    path = openapi_path(service)
    assert path.exists(), f"{path} is missing: run `lakou openapi` and commit the result"
    served = service_openapi(service)
    assert path.read_text() == render(served), (
        f"{path} is stale: the {service.value} service's OpenAPI changed; run `lakou openapi` and commit"
    )
    # Published for users: every operation is documented.
    for route, operations in served["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {route} has no summary"
    assert served["info"]["title"].startswith("Lakou ")
    json.loads(path.read_text())
