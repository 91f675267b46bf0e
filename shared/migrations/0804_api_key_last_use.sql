-- An API key's last use lives beside the key rather than in it: every service that
-- authenticates tenants (the tracker too) records uses, while only the segmenter may change keys.
CREATE TABLE api_key_last_use (
    key_id  bigint PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    used_at timestamptz NOT NULL
);
INSERT INTO api_key_last_use (key_id, used_at)
SELECT id, last_used_at FROM api_keys WHERE last_used_at IS NOT NULL;
ALTER TABLE api_keys DROP COLUMN last_used_at;
