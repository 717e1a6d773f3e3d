-- Query support: fuzzy person name matching, ordering and paging at scale.
--
-- *_words hold the folded words of a person name (archive/person_name.py):
-- lower-cased, accents removed, one element per word plus each component group
-- with its delimiters removed. Fuzzy matching asks for word prefixes through a
-- tsquery against array_to_tsvector(words): built-in full-text search, no
-- extension (pgserver's PostgreSQL has neither pg_trgm nor unaccent). NULL
-- means "not computed yet": rows indexed before this migration are filled in
-- at start by Index.backfill_person_names, which also re-derives the *_ci
-- columns without trailing empty components.

ALTER TABLE study ADD COLUMN patient_name_words text[];
ALTER TABLE study ADD COLUMN referring_physician_name_words text[];

CREATE INDEX study_patient_name_words_idx
    ON study USING gin (array_to_tsvector(patient_name_words));
CREATE INDEX study_referring_physician_name_words_idx
    ON study USING gin (array_to_tsvector(referring_physician_name_words));
CREATE INDEX study_unfilled_words_idx ON study (pk) WHERE patient_name_words IS NULL;

-- Study searches filtered by a series attribute, and the counts of a page of
-- studies: series by study with their modality, instances by series with their
-- SOP class, so both are answered from the indexes alone.
CREATE INDEX instance_series_sop_class_idx ON instance (series_pk, sop_class_uid);

-- orderby StudyDate (and StudyTime) in either direction, as archive/_sql.py
-- sorts: NULL as '', ties broken by pk.
CREATE INDEX study_date_order_idx
    ON study ((COALESCE(study_date, '')), (COALESCE(study_time, '')), pk);
