-- CRC-32 (ISO 3309, as ZIP uses it) of each instance's Part 10 bytes, taken at
-- ingest beside the SHA-256, so a batch download can write its ZIP headers
-- before streaming a byte (PS3.18 batch retrieve, resumable with Range).
-- NULL for instances stored before this column: filled on first download.
ALTER TABLE instance ADD COLUMN crc32 bigint;
