-- wce:no-transaction
-- Recipients sent back to wait because a status callback reported WhatsApp's spam (131048) or
-- pair-rate (131056) refusal after Twilio accepted the create. The sender's maintenance looks
-- for the spam refusals every pass (to hold their tenants), and the segmenter's campaign monitor
-- for completed campaigns that have such recipients waiting (to run them again): both read this
-- small index instead of every row waiting for a retry. Built without locking the table.
DROP INDEX CONCURRENTLY IF EXISTS recipients_callback_rate_refusals;
-- wce:step
CREATE INDEX CONCURRENTLY recipients_callback_rate_refusals ON recipients (error_code, updated_at)
    WHERE state = 'retry_wait' AND error_code IN (131048, 131056);
