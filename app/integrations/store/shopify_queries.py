"""The GraphQL documents the Shopify connector sends (Admin API, version in ``shopify.py``).

Kept apart from the code so a reviewer sees every field we read and every
mutation we can send in one place. Written against the GraphQL Admin API
reference 2026-01 (orders / customers / products connections with
``pageInfo { hasNextPage endCursor }`` and a ``query`` search string;
``Order.refunds`` and ``Order.transactions`` are plain lists;
``refundCreate`` accepts ``@idempotent(key:)`` since 2026-01 and requires it
from 2026-04).
"""

from __future__ import annotations

import re

MONEY = "fragment Money on MoneyBag { shopMoney { amount currencyCode } }"

SHOP = "query Shop { shop { name currencyCode myshopifyDomain } }"

ORDERS = (
    """
query Orders($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id name email createdAt updatedAt note tags
      displayFinancialStatus displayFulfillmentStatus currencyCode
      customer { id }
      subtotalPriceSet { ...Money }
      totalShippingPriceSet { ...Money }
      totalTaxSet { ...Money }
      totalPriceSet { ...Money }
      totalRefundedSet { ...Money }
      lineItems(first: 50) {
        nodes { id sku title quantity originalUnitPriceSet { ...Money } }
      }
    }
  }
}
"""
    + MONEY
)

CUSTOMERS = """
query Customers($first: Int!, $after: String, $query: String) {
  customers(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id firstName lastName updatedAt numberOfOrders
      defaultEmailAddress { emailAddress }
      amountSpent { amount currencyCode }
    }
  }
}
"""

PRODUCTS = """
query Products($first: Int!, $after: String, $query: String) {
  products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes { id title status vendor productType updatedAt }
  }
}
"""

ORDER_FOR_REFUND = (
    """
query OrderForRefund($id: ID!) {
  order(id: $id) {
    id name currencyCode displayFinancialStatus note tags email
    totalRefundedSet { ...Money }
    refunds(first: 50) { id note createdAt totalRefundedSet { ...Money } }
    lineItems(first: 100) {
      nodes { id title quantity refundableQuantity originalUnitPriceSet { ...Money } }
    }
    transactions(first: 50) {
      id kind status gateway
      amountSet { ...Money }
      maximumRefundableV2 { amount currencyCode }
    }
  }
}
"""
    + MONEY
)

ORDER_REFUNDS = (
    """
query OrderRefunds($id: ID!) {
  order(id: $id) {
    id
    refunds(first: 50) { id note createdAt totalRefundedSet { ...Money } }
  }
}
"""
    + MONEY
)

ORDER_FIELDS = "query OrderFields($id: ID!) { order(id: $id) { id name note tags email } }"

ORDER_UPDATE = """
mutation OrderUpdate($input: OrderInput!) {
  orderUpdate(input: $input) {
    order { id note tags email }
    userErrors { field message }
  }
}
"""

_REFUND_CREATE = """
mutation RefundCreate($input: RefundInput!) {
  refundCreate(input: $input) @idempotent(key: "%s") {
    refund { id note createdAt totalRefundedSet { ...Money } }
    userErrors { field message }
  }
}
"""
_KEY = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def refund_create(idempotency_key: str) -> str:
    """The ``refundCreate`` mutation carrying ``idempotency_key`` (a UUID) in its directive.

    The key is written into the document rather than passed as a variable:
    Shopify documents the directive with a literal, and a UUID needs no escaping.
    """
    if not _KEY.fullmatch(idempotency_key):
        raise ValueError("a refund idempotency key must be a lower-case UUID")
    return _REFUND_CREATE % idempotency_key + MONEY
