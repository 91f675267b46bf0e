-- Retries that did not count as attempts because Twilio provably never processed the create (a
-- 429, a request that never left, or a create two lookups could not find). They do not bring a
-- recipient closer to `failed`, but they do move its retries up the delay tiers, so a recipient
-- that keeps meeting a rate limit or an outage backs off like any other.
ALTER TABLE recipients ADD COLUMN deferrals integer NOT NULL DEFAULT 0;
