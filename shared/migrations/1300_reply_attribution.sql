-- Replies: an inbound message is attributed, when it is stored, to the last message the engine
-- sent that number in the 24 hours before it arrived (its campaign and recipient row), so the
-- reads per campaign and per recipient are index scans and never re-decide an attribution.
ALTER TABLE inbound_messages ADD COLUMN campaign_id uuid, ADD COLUMN recipient_id bigint;

CREATE INDEX inbound_messages_tenant ON inbound_messages (tenant_id, id);
CREATE INDEX inbound_messages_campaign ON inbound_messages (tenant_id, campaign_id, id)
    WHERE campaign_id IS NOT NULL;
CREATE INDEX inbound_messages_recipient ON inbound_messages (tenant_id, recipient_id, id)
    WHERE recipient_id IS NOT NULL;

-- Messages stored before this migration get the same attribution.
UPDATE inbound_messages i
SET campaign_id = a.campaign_id, recipient_id = a.id
FROM inbound_messages m
CROSS JOIN LATERAL (
    SELECT r.id, r.campaign_id
    FROM campaigns c
    JOIN recipients r ON r.campaign_id = c.id AND r.phone_e164 = m.phone_e164
    WHERE c.tenant_id = m.tenant_id AND c.started_at <= m.received_at
      AND (c.completed_at IS NULL OR c.completed_at >= m.received_at - interval '24 hours')
      AND r.tenant_id = m.tenant_id
      AND r.sent_at > m.received_at - interval '24 hours' AND r.sent_at <= m.received_at
    ORDER BY r.sent_at DESC, r.id DESC
    LIMIT 1
) a
WHERE i.id = m.id;
