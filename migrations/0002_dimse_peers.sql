-- DIMSE peers: the C-MOVE destinations known by AE title (PS3.4 C.4.2.1.4.1),
-- kept in the index so that every node of the archive sees the same ones.
-- AE titles are case-sensitive and compared without leading/trailing spaces
-- (PS3.5 6.2, VR AE); the admin API stores them trimmed.

CREATE TABLE dimse_peer (
    ae_title text PRIMARY KEY CHECK (length(ae_title) BETWEEN 1 AND 16),
    host text NOT NULL CHECK (length(host) BETWEEN 1 AND 253),
    port integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
