-- How many times the reconciler looked for an `unknown` row's message at Twilio and found none
-- since the row's last claim. "Not found" is believed only on the second look, a reconcile
-- interval after the first: a create that reached Twilio late (it sat in a queue on the way)
-- has that long again to show up before the recipient is sent anything a second time.
ALTER TABLE recipients ADD COLUMN lookups smallint NOT NULL DEFAULT 0;
