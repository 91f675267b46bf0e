-- Progress of a campaign's snapshot, so a restarted segmenter resumes it where it stopped.
ALTER TABLE campaigns
    ADD COLUMN snapshot_cursor text,
    ADD COLUMN snapshot_completed_at timestamptz;
