-- SHA-256 of the data set without its file meta information: the same instance
-- sent once by STOW-RS and once by C-STORE differs only in the meta, and must
-- count as a resend, not as changed content. NULL for rows indexed before.
ALTER TABLE instance ADD COLUMN content_sha256 bytea;
