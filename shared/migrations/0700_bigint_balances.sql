-- Purchased credits never expire and top-ups add up: an integer balance overflowed after about
-- twenty top-ups of 100 million. (The plan balance is reset to the monthly plan, at most
-- 100 million, so it stays an integer.)
ALTER TABLE credit_accounts ALTER COLUMN purchased_balance TYPE bigint;
