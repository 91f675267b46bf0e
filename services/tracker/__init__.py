"""Tracker: Twilio status and inbound webhooks, delivery state, opt-outs, and the tenant's logs,
CSV exports and live progress."""
