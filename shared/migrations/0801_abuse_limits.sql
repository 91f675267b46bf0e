-- Abuse limits shared by every replica: request counts per fixed window and subject (an API
-- key's hash or a client address), and failed-authentication counts with a lockout per client
-- address. Unlogged: after a crash the counters start again from zero, which only forgives.

CREATE UNLOGGED TABLE rate_limit_hits (
    subject      text NOT NULL,
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL,
    PRIMARY KEY (subject, window_start)
);
CREATE INDEX rate_limit_hits_window ON rate_limit_hits (window_start);

CREATE UNLOGGED TABLE auth_lockouts (
    subject         text PRIMARY KEY,
    failures        integer NOT NULL,
    last_failure_at timestamptz NOT NULL,
    locked_until    timestamptz
);
CREATE INDEX auth_lockouts_last_failure ON auth_lockouts (last_failure_at);
