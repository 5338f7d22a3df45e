-- PostgreSQL import of the generator's OMOP CSV for the engine benchmark:
-- the same tables and meanings as sqlite_import.sql (P, EV, D, SNAP), typed
-- (dates as DATE). run.sh first creates the UNLOGGED raw_* tables from the
-- CSV headers (all columns text) and fills them with \copy (COPY FROM
-- STDIN); this file turns them into the benchmark tables.
\set ON_ERROR_STOP on
SET maintenance_work_mem = '1GB';

CREATE TABLE P(pid bigint PRIMARY KEY, sex text NOT NULL, by int NOT NULL,
               bmd int NOT NULL);
INSERT INTO P
SELECT person_id::bigint,
       CASE gender_concept_id::int
         WHEN 8532 THEN 'female' WHEN 8507 THEN 'male'
         WHEN 8521 THEN 'other' WHEN 8570 THEN 'other'
         ELSE CASE upper(trim(coalesce(gender_source_value, '')))
           WHEN 'F' THEN 'female' WHEN 'FEMALE' THEN 'female'
           WHEN 'M' THEN 'male' WHEN 'MALE' THEN 'male' ELSE 'unknown' END
       END,
       year_of_birth::int,
       CASE WHEN coalesce(trim(month_of_birth), '') != ''
             AND coalesce(trim(day_of_birth), '') != ''
            THEN month_of_birth::int * 100 + day_of_birth::int
            ELSE 701 END
FROM raw_person;

CREATE TEMP TABLE C AS
SELECT id, vocab,
       CASE WHEN vocab IN ('icd10', 'icd10cm', 'icd10ca', 'cim10', 'icd9', 'icd9cm')
            THEN upper(replace(replace(concept_code, '.', ''), ' ', ''))
            ELSE upper(trim(concept_code)) END AS code
FROM (SELECT concept_id::bigint AS id,
             lower(replace(replace(replace(trim(vocabulary_id), ' ', ''), '-', ''), '_', '')) AS vocab,
             concept_code
      FROM raw_concept) s;
CREATE UNIQUE INDEX ON C(id);

CREATE TABLE EV(domain smallint, vocab text, code text, eid bigint,
                pid bigint, d date, value double precision);
INSERT INTO EV
SELECT 1, c.vocab, c.code, r.condition_occurrence_id::bigint,
       r.person_id::bigint, r.condition_start_date::date, NULL
FROM raw_condition r JOIN C c ON c.id = r.condition_concept_id::bigint;
INSERT INTO EV
SELECT 1, c.vocab, c.code, r.condition_occurrence_id::bigint,
       r.person_id::bigint, r.condition_start_date::date, NULL
FROM raw_condition r JOIN C c ON c.id = r.condition_source_concept_id::bigint
WHERE r.condition_source_concept_id::bigint != r.condition_concept_id::bigint;
INSERT INTO EV
SELECT 2, c.vocab, c.code, r.drug_exposure_id::bigint,
       r.person_id::bigint, r.drug_exposure_start_date::date, NULL
FROM raw_drug r JOIN C c ON c.id = r.drug_concept_id::bigint;
INSERT INTO EV
SELECT 2, c.vocab, c.code, r.drug_exposure_id::bigint,
       r.person_id::bigint, r.drug_exposure_start_date::date, NULL
FROM raw_drug r JOIN C c ON c.id = r.drug_source_concept_id::bigint
WHERE r.drug_source_concept_id::bigint != r.drug_concept_id::bigint;

CREATE TABLE D(pid bigint PRIMARY KEY);
INSERT INTO D SELECT DISTINCT person_id::bigint FROM raw_death;

CREATE TABLE SNAP AS
SELECT d, extract(year FROM d)::int AS y,
       (extract(month FROM d) * 100 + extract(day FROM d))::int AS md
FROM (SELECT max(d) AS d FROM EV) s;

DROP TABLE raw_person, raw_concept, raw_condition, raw_drug, raw_death;

-- Fair indexes: (code, patient) -- covering, with the date and event id for
-- sequences and repeats -- and (patient). VACUUM sets the visibility map so
-- that index-only scans need no heap visit.
CREATE INDEX ev_code ON EV(domain, vocab, code, pid, d, eid);
CREATE INDEX ev_pid ON EV(pid);
VACUUM ANALYZE P;
VACUUM ANALYZE EV;
VACUUM ANALYZE D;
ANALYZE SNAP;
SELECT 'postgres', (SELECT COUNT(*) FROM P), (SELECT COUNT(*) FROM EV),
       pg_size_pretty(pg_database_size(current_database()));
