-- Leadership of work one process at a time does (the senders' maintenance), as a lease renewed by
-- a heartbeat: a holder that freezes stops renewing and another takes over when it expires. A
-- session advisory lock would stay with a frozen process for as long as its connection lives.
CREATE TABLE leader_leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
);
