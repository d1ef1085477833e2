"""Schema version 9: HubSpot sync state and the store (orders, customers, products, refunds).

Owned by the connector that uses these tables; appended to
``app.memory.migrations.MIGRATIONS``. Never edit once shipped: add a new version.

Store rows are keyed by ``(source, external_id)``: ``source`` names where they
came from (``shopify``, ``woocommerce``, ``etsy``...), so one order number
from two platforms never collides, and a re-import updates in place. Money is
``DECIMAL(18, 4)`` with its currency beside it (never a float). No foreign
keys: rows are replaced by upserts, which DuckDB's FK checks would refuse.
"""

from __future__ import annotations

from app.memory.migrations_base import Migration

_STATEMENTS = (
    """
    CREATE TABLE hubspot_contacts (
        account_id VARCHAR NOT NULL,
        id VARCHAR NOT NULL,
        email VARCHAR,
        first_name VARCHAR,
        last_name VARCHAR,
        company VARCHAR,
        updated_at TIMESTAMP,
        properties VARCHAR NOT NULL DEFAULT '{}',
        synced_at TIMESTAMP NOT NULL,
        PRIMARY KEY (account_id, id)
    )
    """,
    "CREATE INDEX hubspot_contacts_email ON hubspot_contacts (email)",
    """
    CREATE TABLE integration_sync_state (
        account_id VARCHAR NOT NULL,
        resource VARCHAR NOT NULL,
        last_modified TIMESTAMP,
        synced_at TIMESTAMP NOT NULL,
        PRIMARY KEY (account_id, resource)
    )
    """,
    """
    CREATE TABLE store_orders (
        source VARCHAR NOT NULL,
        external_id VARCHAR NOT NULL,
        name VARCHAR,
        email VARCHAR,
        customer_external_id VARCHAR,
        currency VARCHAR,
        subtotal DECIMAL(18, 4),
        shipping DECIMAL(18, 4),
        tax DECIMAL(18, 4),
        total DECIMAL(18, 4),
        refunded DECIMAL(18, 4),
        financial_status VARCHAR,
        fulfillment_status VARCHAR,
        note VARCHAR,
        tags VARCHAR,
        created_at TIMESTAMP,
        updated_at TIMESTAMP,
        import_batch VARCHAR NOT NULL,
        fingerprint VARCHAR,
        PRIMARY KEY (source, external_id)
    )
    """,
    "CREATE INDEX store_orders_created ON store_orders (created_at)",
    """
    CREATE TABLE store_order_lines (
        source VARCHAR NOT NULL,
        order_external_id VARCHAR NOT NULL,
        line_no INTEGER NOT NULL,
        external_id VARCHAR,
        sku VARCHAR,
        title VARCHAR,
        quantity INTEGER NOT NULL,
        unit_price DECIMAL(18, 4),
        total DECIMAL(18, 4),
        currency VARCHAR,
        import_batch VARCHAR NOT NULL,
        PRIMARY KEY (source, order_external_id, line_no)
    )
    """,
    """
    CREATE TABLE store_customers (
        source VARCHAR NOT NULL,
        external_id VARCHAR NOT NULL,
        email VARCHAR,
        first_name VARCHAR,
        last_name VARCHAR,
        orders_count INTEGER,
        total_spent DECIMAL(18, 4),
        currency VARCHAR,
        updated_at TIMESTAMP,
        import_batch VARCHAR NOT NULL,
        PRIMARY KEY (source, external_id)
    )
    """,
    """
    CREATE TABLE store_products (
        source VARCHAR NOT NULL,
        external_id VARCHAR NOT NULL,
        title VARCHAR,
        status VARCHAR,
        vendor VARCHAR,
        product_type VARCHAR,
        updated_at TIMESTAMP,
        import_batch VARCHAR NOT NULL,
        PRIMARY KEY (source, external_id)
    )
    """,
    """
    CREATE TABLE store_refunds (
        source VARCHAR NOT NULL,
        external_id VARCHAR NOT NULL,
        order_external_id VARCHAR NOT NULL,
        amount DECIMAL(18, 4),
        currency VARCHAR,
        note VARCHAR,
        created_at TIMESTAMP,
        import_batch VARCHAR NOT NULL,
        PRIMARY KEY (source, external_id)
    )
    """,
    "CREATE INDEX store_refunds_order ON store_refunds (source, order_external_id)",
)

STORE = Migration(
    9,
    "HubSpot sync state and the store (orders, customers, products, refunds)",
    _STATEMENTS,
)
