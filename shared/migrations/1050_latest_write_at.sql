-- The latest moment an `unknown` row's create can have been written to Twilio, on the database's
-- clock: when the sender recorded the ambiguous answer (its call had ended by then, and a request
-- is never written after its call ended), or the end of the claim's lease for a row whose sender
-- died (a sender never writes a create past its claim's deadline). The reconciler believes
-- "Twilio has no such message" only once this is older than the Twilio request timeout plus a
-- margin (services/sender/maintenance.py says why). NULL, or older than the row's claim, means
-- it was not recorded for this claim: the reconciler then counts from the row's last change.
ALTER TABLE recipients ADD COLUMN latest_write_at timestamptz;
