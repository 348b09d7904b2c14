-- Recovery codes of the former kind (10 symbols, 50 bits, stored as a fast
-- hash) are no longer accepted (ASVS V6.5.2). Codes stored before this
-- step cannot be told apart, so they are all marked not strong: they are
-- not counted as codes left, and the account page asks for new ones.
ALTER TABLE recovery_codes ADD COLUMN strong BOOLEAN NOT NULL DEFAULT 0;
