-- Scheduled campaigns and tenants' sending windows (quiet hours).
--
-- A scheduled campaign waits in state `scheduled` until `scheduled_at`; its audience is
-- snapshotted when it starts, not when it is scheduled. `schedule_timezone` is the zone the
-- tenant gave the time in (shown back; the instant is `scheduled_at`).
--
-- A running campaign that may not send now (its tenant's sending window is closed, or another
-- hold) keeps its state and says why in `hold_reason`, until `hold_until` (when known). Other
-- holds (messaging limits) use the same two columns, whichever migration adds them first.
ALTER TABLE campaigns
    ADD COLUMN scheduled_at      timestamptz,
    ADD COLUMN schedule_timezone text,
    ADD COLUMN IF NOT EXISTS hold_reason text,
    ADD COLUMN IF NOT EXISTS hold_until  timestamptz;

ALTER TABLE campaigns DROP CONSTRAINT campaigns_state_check;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_state_check
    CHECK (state IN ('draft', 'scheduled', 'snapshotting', 'running', 'paused', 'completed', 'cancelled',
                     'failed'));
ALTER TABLE campaigns ADD CONSTRAINT campaigns_scheduled_has_time
    CHECK (state <> 'scheduled' OR scheduled_at IS NOT NULL);

-- What the schedulers of every segmenter look for once a second.
CREATE INDEX campaigns_due ON campaigns (scheduled_at) WHERE state = 'scheduled';

-- {"days": ["mon", ...], "start": "09:00", "end": "20:00", "recipient_timezone": false}; NULL: no window.
ALTER TABLE tenants ADD COLUMN sending_window jsonb;
