-- The archive index: study, series and instance rows with typed, indexed columns
-- for the standard QIDO-RS / C-FIND matching keys (PS3.18 Table 10.6.1-5,
-- PS3.4 C.6.1.1), plus each level's DICOM JSON.
--
-- Patient attributes live on the study row: an archive receives them with each
-- study and must answer with what that study carried. The patient level of
-- C-FIND groups studies by (patient_id, issuer_of_patient_id).
--
-- Text columns ending in _ci hold lower-cased Unicode for case-insensitive
-- person name matching, one column per PN component group (PS3.5 6.2.1).
-- Dates are 'YYYYMMDD' and times 'HHMMSS.FFFFFF' (zero-padded) so that text
-- comparison is chronological; a value that is not a valid DA/TM is NULL here
-- and kept as received in the JSON.

CREATE TABLE study (
    pk bigserial PRIMARY KEY,
    study_instance_uid text NOT NULL UNIQUE,
    patient_id text NOT NULL DEFAULT '',
    issuer_of_patient_id text NOT NULL DEFAULT '',
    patient_name text,
    patient_name_alphabetic_ci text,
    patient_name_ideographic_ci text,
    patient_name_phonetic_ci text,
    patient_birth_date text,
    patient_sex text,
    study_date text,
    study_time text,
    accession_number text,
    study_id text,
    study_description text,
    referring_physician_name text,
    referring_physician_name_alphabetic_ci text,
    referring_physician_name_ideographic_ci text,
    referring_physician_name_phonetic_ci text,
    attributes json NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX study_patient_id_idx ON study (patient_id, issuer_of_patient_id);
CREATE INDEX study_date_idx ON study (study_date, study_time);
CREATE INDEX study_accession_number_idx ON study (accession_number);
CREATE INDEX study_patient_name_a_idx ON study (patient_name_alphabetic_ci text_pattern_ops);
CREATE INDEX study_patient_name_i_idx ON study (patient_name_ideographic_ci text_pattern_ops);
CREATE INDEX study_patient_name_p_idx ON study (patient_name_phonetic_ci text_pattern_ops);
CREATE INDEX study_created_idx ON study (created_at, pk);

CREATE TABLE series (
    pk bigserial PRIMARY KEY,
    study_pk bigint NOT NULL REFERENCES study (pk) ON DELETE CASCADE,
    series_instance_uid text NOT NULL UNIQUE,
    modality text,
    series_number integer,
    series_description text,
    performed_procedure_step_start_date text,
    performed_procedure_step_start_time text,
    -- RequestAttributesSequence items: ScheduledProcedureStepID, RequestedProcedureID
    scheduled_procedure_step_ids text[] NOT NULL DEFAULT '{}',
    requested_procedure_ids text[] NOT NULL DEFAULT '{}',
    attributes json NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX series_study_idx ON series (study_pk, modality);
CREATE INDEX series_modality_idx ON series (modality);

CREATE TABLE instance (
    pk bigserial PRIMARY KEY,
    series_pk bigint NOT NULL REFERENCES series (pk) ON DELETE CASCADE,
    sop_instance_uid text NOT NULL UNIQUE,
    sop_class_uid text NOT NULL,
    instance_number integer,
    number_of_frames integer,
    rows integer,
    columns integer,
    bits_allocated integer,
    samples_per_pixel integer,
    transfer_syntax_uid text NOT NULL,
    object_key text NOT NULL UNIQUE,
    object_size bigint NOT NULL,
    sha256 bytea NOT NULL,
    offsets_valid boolean NOT NULL,
    -- [[path, vr, offset, length], ...] of bulk data values in the Part 10 bytes
    bulk jsonb NOT NULL DEFAULT '[]',
    -- encapsulated pixel data: per frame, [[offset, length], ...] of its fragments
    frames jsonb,
    -- the whole data set as DICOM JSON, bulk data as BulkDataURI (PS3.18 F.2);
    -- json, not jsonb: served as stored text, numbers keep their exact spelling
    metadata json NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX instance_series_idx ON instance (series_pk, instance_number);
CREATE INDEX instance_sop_class_idx ON instance (sop_class_uid);
