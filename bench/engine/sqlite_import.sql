-- SQLite import of the generator's OMOP CSV for the engine benchmark.
-- run.sh substitutes @CSV@ (the CSV directory) and @DB@ (the benchmark
-- database) and runs: sqlite3 -batch -bail RAW_DB < this file.
-- The raw CSV tables go to a scratch database; the benchmark database gets
-- the tables node/testing/sql_reference.h's SQL reads (P, EV, D, SNAP), for
-- the tables the benchmark queries touch (conditions, drugs), with the
-- loader's meanings: codes from concept.csv (vocabulary lower-cased without
-- ' ', '-', '_'; ICD codes upper case without dots or whitespace), sex from
-- gender_concept_id then gender_source_value, birth month*100+day (701 when
-- unknown).
.output /dev/null
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA temp_store = MEMORY;
PRAGMA cache_size = -2000000;
.output stdout
.import --csv '@CSV@/person.csv' raw_person
.import --csv '@CSV@/concept.csv' raw_concept
.import --csv '@CSV@/condition_occurrence.csv' raw_condition
.import --csv '@CSV@/drug_exposure.csv' raw_drug
.import --csv '@CSV@/death.csv' raw_death
ATTACH '@DB@' AS bench;
.output /dev/null
PRAGMA bench.journal_mode = OFF;
PRAGMA bench.synchronous = OFF;
PRAGMA bench.page_size = 4096;
.output stdout

CREATE TABLE bench.P(pid INTEGER PRIMARY KEY, sex TEXT NOT NULL,
                     by INTEGER NOT NULL, bmd INTEGER NOT NULL);
INSERT INTO bench.P
SELECT CAST(person_id AS INTEGER),
       CASE CAST(gender_concept_id AS INTEGER)
         WHEN 8532 THEN 'female' WHEN 8507 THEN 'male'
         WHEN 8521 THEN 'other' WHEN 8570 THEN 'other'
         ELSE CASE upper(trim(gender_source_value))
           WHEN 'F' THEN 'female' WHEN 'FEMALE' THEN 'female'
           WHEN 'M' THEN 'male' WHEN 'MALE' THEN 'male' ELSE 'unknown' END
       END,
       CAST(year_of_birth AS INTEGER),
       CASE WHEN trim(month_of_birth) != '' AND trim(day_of_birth) != ''
            THEN CAST(month_of_birth AS INTEGER) * 100
                 + CAST(day_of_birth AS INTEGER)
            ELSE 701 END
FROM raw_person;

CREATE TABLE C(id INTEGER PRIMARY KEY, vocab TEXT, code TEXT);
INSERT OR REPLACE INTO C
SELECT id, vocab,
       CASE WHEN vocab IN ('icd10', 'icd10cm', 'icd10ca', 'cim10', 'icd9', 'icd9cm')
            THEN upper(replace(replace(concept_code, '.', ''), ' ', ''))
            ELSE upper(trim(concept_code)) END
FROM (SELECT CAST(concept_id AS INTEGER) AS id,
             lower(replace(replace(replace(trim(vocabulary_id), ' ', ''), '-', ''), '_', '')) AS vocab,
             concept_code
      FROM raw_concept);

CREATE TABLE bench.EV(domain INTEGER, vocab TEXT, code TEXT, eid INTEGER,
                      pid INTEGER, d TEXT, value REAL);
-- One row per (event row, code it carries): the concept, and the source
-- concept when it is another one.
INSERT INTO bench.EV
SELECT 1, c.vocab, c.code, 10000000000 + r.rowid, CAST(r.person_id AS INTEGER),
       r.condition_start_date, NULL
FROM raw_condition r JOIN C c ON c.id = CAST(r.condition_concept_id AS INTEGER);
INSERT INTO bench.EV
SELECT 1, c.vocab, c.code, 10000000000 + r.rowid, CAST(r.person_id AS INTEGER),
       r.condition_start_date, NULL
FROM raw_condition r JOIN C c ON c.id = CAST(r.condition_source_concept_id AS INTEGER)
WHERE CAST(r.condition_source_concept_id AS INTEGER)
      != CAST(r.condition_concept_id AS INTEGER);
INSERT INTO bench.EV
SELECT 2, c.vocab, c.code, 20000000000 + r.rowid, CAST(r.person_id AS INTEGER),
       r.drug_exposure_start_date, NULL
FROM raw_drug r JOIN C c ON c.id = CAST(r.drug_concept_id AS INTEGER);
INSERT INTO bench.EV
SELECT 2, c.vocab, c.code, 20000000000 + r.rowid, CAST(r.person_id AS INTEGER),
       r.drug_exposure_start_date, NULL
FROM raw_drug r JOIN C c ON c.id = CAST(r.drug_source_concept_id AS INTEGER)
WHERE CAST(r.drug_source_concept_id AS INTEGER)
      != CAST(r.drug_concept_id AS INTEGER);

CREATE TABLE bench.D(pid INTEGER PRIMARY KEY);
INSERT OR IGNORE INTO bench.D SELECT CAST(person_id AS INTEGER) FROM raw_death;

-- The snapshot date as the node defines it (the latest event date); the
-- benchmark checks it equals the node's before timing.
CREATE TABLE bench.SNAP AS
SELECT d, CAST(substr(d, 1, 4) AS INTEGER) AS y,
       CAST(substr(d, 6, 2) AS INTEGER) * 100 + CAST(substr(d, 9, 2) AS INTEGER) AS md
FROM (SELECT max(d) AS d FROM bench.EV);

-- Fair indexes: (code, patient) -- covering, with the date and event id for
-- sequences and repeats -- and (patient).
CREATE INDEX bench.EV_code ON EV(domain, vocab, code, pid, d, eid);
CREATE INDEX bench.EV_pid ON EV(pid);
ANALYZE bench;
.mode list
.separator |
SELECT 'sqlite', (SELECT COUNT(*) FROM bench.P), (SELECT COUNT(*) FROM bench.EV);
