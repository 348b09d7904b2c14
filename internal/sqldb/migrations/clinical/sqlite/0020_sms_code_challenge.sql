-- A code texted for the second step of a sign-in belongs to the sign-in
-- challenge that asked for it (ASVS V6.6.2): it completes that sign-in and
-- nothing else, neither another sign-in of the account nor a confirmation
-- of a session. Codes texted to confirm a new phone have none.
ALTER TABLE sms_codes ADD COLUMN challenge_id TEXT;
