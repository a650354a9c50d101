"""A Shopify Admin GraphQL endpoint served by `responses`, answering per operation name.

    stub = ShopifyStub(rsps, "demo.myshopify.com")
    stub.on("OrdersCatchUp", {"data": {...}})              # one answer, repeated
    stub.on("RefundCreate", [answer1, answer2])            # answers in turn (the last repeats)
    stub.on("RefundCreate", lambda variables, request: (200, {...}))   # computed
    ...
    stub.calls("RefundCreate")   # the variables of each call, in order

Every request is checked as Shopify would: the document must validate against the Admin
2026-04 schema and the variables against the document (a failure is an assertion error in the
test, not a quiet 200). Answers are written in the shape Shopify documents for each operation.
An answer may be an Exception instance (raised, e.g. requests.ConnectionError for a timeout) or
a (status, body) or (status, body, headers) tuple.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import responses

from connector.platforms.shopify import API_VERSION
from tests.shopify.schema import operations, validate_document, validate_variables


def graphql_url(shop_domain: str) -> str:
    return f"https://{shop_domain}/admin/api/{API_VERSION}/graphql.json"


class ShopifyStub:
    def __init__(self, rsps: responses.RequestsMock, shop_domain: str):
        self.shop_domain = shop_domain
        self.rsps = rsps
        self.answers: dict[str, list[Any]] = {}
        self.log: list[tuple[str, dict, Any]] = []  # (operation, variables, request)
        rsps.add_callback(responses.POST, graphql_url(shop_domain), callback=self._answer,
                          content_type="application/json")

    def on(self, operation: str, answer: Any) -> "ShopifyStub":
        self.answers[operation] = list(answer) if isinstance(answer, list) else [answer]
        return self

    def calls(self, operation: str) -> list[dict]:
        return [variables for name, variables, _ in self.log if name == operation]

    def requests(self, operation: str) -> list[Any]:
        return [request for name, _, request in self.log if name == operation]

    def _answer(self, request):
        body = json.loads(request.body)
        query, variables = body["query"], body.get("variables") or {}
        errors = validate_document(query)
        assert not errors, f"document invalid against Admin {API_VERSION}: {errors}"
        ops = operations(query)
        name = body.get("operationName") or (ops[0].name.value if ops and ops[0].name else None)
        var_errors = validate_variables(query, variables, name)
        assert not var_errors, f"variables for {name} invalid: {var_errors}"
        self.log.append((name, variables, request))
        queue = self.answers.get(name)
        assert queue, f"the stub has no answer for {name}"
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Callable) and not isinstance(answer, (dict, list, tuple)):
            answer = answer(variables, request)
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, tuple):
            status, payload, *headers = answer
            return status, (headers[0] if headers else {}), json.dumps(payload)
        return 200, {}, json.dumps(answer)
