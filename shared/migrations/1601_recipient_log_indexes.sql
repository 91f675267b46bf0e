-- The recipient log (services/tracker/queries.py) pages a campaign's rows in id order, optionally
-- of some states or of one error code. Each filter gets an index that yields its rows already in
-- id order, so a page is an index walk that stops at the page size however deep it starts and
-- however rare the filter is:
--   state:      (campaign_id, state, id), replacing (campaign_id, state); everything that used the
--               old index (the sender's and the segmenter's unsettled and unpublished probes, by
--               campaign and state) uses its leading columns as before.
--   error code: (campaign_id, error_code, id), only rows that have one (a small share).

CREATE INDEX recipients_campaign_state_id ON recipients (campaign_id, state, id);
DROP INDEX recipients_campaign_state;
CREATE INDEX recipients_campaign_error_code ON recipients (campaign_id, error_code, id)
    WHERE error_code IS NOT NULL;
