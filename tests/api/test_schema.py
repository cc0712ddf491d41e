"""schemathesis against the generated OpenAPI document: every operation, with generated parameters
(valid and invalid), answers without a 5xx and within its documented responses and shapes."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

pytestmark = pytest.mark.django_db(transaction=True)


def test_no_5xx_and_no_answer_outside_the_schema(mirrored, make_key, settings):
    settings.BITRIX24_API_RATE_LIMIT = 1_000_000  # the fuzzer is to meet the handlers, not the limit
    portal = mirrored()
    key = make_key(portal)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 15  # 7 lists, 7 details, the portal
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            if "member_id" in (case.path_parameters or {}):
                case.path_parameters["member_id"] = portal.member_id  # the key's portal: real data behind
            case.call_and_validate(headers={"X-API-Key": key})

        check()
