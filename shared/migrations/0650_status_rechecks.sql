-- Rows left at `sent` or `delivered` are re-checked with Twilio's Message fetch in case their
-- status callbacks were lost: when a row was last checked, and how many times (a row is checked
-- a bounded number of times, the interval doubling each time).
ALTER TABLE recipients
    ADD COLUMN status_checked_at timestamptz,
    ADD COLUMN status_rechecks smallint NOT NULL DEFAULT 0;

CREATE INDEX recipients_status_recheck ON recipients (tenant_id, updated_at)
    WHERE state IN ('sent', 'delivered') AND twilio_sid IS NOT NULL;
