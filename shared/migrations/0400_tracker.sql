-- Tracker read paths and retention.

-- Current send rate of a campaign (recipients sent in the last seconds).
CREATE INDEX recipients_campaign_sent_at ON recipients (campaign_id, sent_at) WHERE sent_at IS NOT NULL;

-- A campaign's message event log, paged by id.
CREATE INDEX message_events_campaign ON message_events (tenant_id, campaign_id, id);

-- Retention deletes receipts and orphans by age.
CREATE INDEX callback_receipts_received_at ON callback_receipts (received_at);
CREATE INDEX orphan_callbacks_received_at ON orphan_callbacks (received_at);
