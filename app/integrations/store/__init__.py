"""The store: Shopify over GraphQL, CSV exports of other platforms, and local tables."""

from app.integrations.store.connector import ShopifyConnector
from app.integrations.store.orders_csv import ImportReport, import_orders
from app.integrations.store.shopify import API_VERSION, ShopifyClient

__all__ = ["API_VERSION", "ImportReport", "ShopifyClient", "ShopifyConnector", "import_orders"]
