-- Sending engine: which claimed rows hold a credit reservation, and when a retry is due.

-- True while a claimed row holds one reserved credit (set at claim when credits apply), so a
-- release or a debit always matches a reservation, even if credits are switched on mid-send.
ALTER TABLE recipients ADD COLUMN credit_held boolean NOT NULL DEFAULT false;

-- When a row in retry_wait is due back from its retry tier; the sweeper re-publishes rows whose
-- retry message the broker lost.
ALTER TABLE recipients ADD COLUMN next_attempt_at timestamptz;

-- Unknown rows are reconciled by the phone number: the orphan callbacks of a tenant by recipient.
CREATE INDEX orphan_callbacks_to ON orphan_callbacks (tenant_id, (payload ->> 'To')) WHERE matched_at IS NULL;
