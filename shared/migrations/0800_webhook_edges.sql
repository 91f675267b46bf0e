-- Webhook edges: a signed callback replayed with a fresh idempotency token is kept at most once
-- while it waits for its message (one orphan per tenant, message SID and status), and inbound
-- messages are deleted by age like the other webhook records.

DELETE FROM orphan_callbacks o
USING orphan_callbacks earlier
WHERE earlier.tenant_id = o.tenant_id
  AND earlier.message_sid = o.message_sid
  AND earlier.status = o.status
  AND earlier.id < o.id;

CREATE UNIQUE INDEX orphan_callbacks_once ON orphan_callbacks (tenant_id, message_sid, status);

CREATE INDEX inbound_messages_received_at ON inbound_messages (received_at);
