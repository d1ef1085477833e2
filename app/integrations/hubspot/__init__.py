"""HubSpot (CRM over REST): contacts, companies, deals, notes; see ``connector``."""

from app.integrations.hubspot.client import HubSpotClient, hubspot_error
from app.integrations.hubspot.connector import HubSpotConnector

__all__ = ["HubSpotClient", "HubSpotConnector", "hubspot_error"]
