"""Microsoft Graph: the one route a message names, the client that PATCHes it, and how it retries and paces."""
