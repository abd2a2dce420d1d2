#!/usr/bin/env node
// Which normative statements of MQTT 3.1.1 and 5.0 are named by at least one test.
// A test names a statement by its ID in brackets, e.g. "[MQTT-3.1.2-24] closes a silent connection".
// The version a name counts for: the first "(5.0)" or "(3.1.1)" after the ID on its line, else a
// v5/ or v311/ folder, else both versions.
// Usage: npm run spec-coverage [-- --all] [-- --check]
//   --all    also list statements that bind the client or both parties (default: server only)
//   --check  exit 1 unless every server statement of MQTT 3.1.1 is covered
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, sep } from 'node:path';

const args = new Set(process.argv.slice(2));
const SPEC_DIR = new URL('../spec/', import.meta.url);
const VERSIONS = [
  { name: '3.1.1', file: 'mqtt-v3.1.1-normative.tsv', folder: `${sep}v311${sep}` },
  { name: '5.0', file: 'mqtt-v5.0-normative.tsv', folder: `${sep}v5${sep}` },
];

function readSpec(file) {
  const rows = readFileSync(new URL(file, SPEC_DIR), 'utf8').trim().split('\n').slice(1);
  return rows.map((line) => {
    const [id, section, appliesTo, statement] = line.split('\t');
    return { id, section, appliesTo, statement };
  });
}

function testFiles(dir, out = []) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) testFiles(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** id -> { '3.1.1': Set<file>, '5.0': Set<file> } */
const named = new Map();
const ID = /\[(MQTT-\d+(?:\.\d+)*-\d+)\]/g;
for (const file of testFiles('test')) {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    for (const m of line.matchAll(ID)) {
      // an ID counts for the first version marker after it on the line: "[A] [B] (3.1.1) [C] (5.0)"
      const marker = /\((5\.0|3\.1\.1)\)/.exec(line.slice((m.index ?? 0) + m[0].length));
      let versions;
      if (marker) versions = [marker[1]];
      else {
        const v = VERSIONS.find((x) => file.includes(x.folder));
        versions = v ? [v.name] : VERSIONS.map((x) => x.name);
      }
      const entry = named.get(m[1]) ?? { '3.1.1': new Set(), '5.0': new Set() };
      for (const v of versions) entry[v].add(file);
      named.set(m[1], entry);
    }
  }
}

/** statements that cannot bind Midge, each with the reason: "id<TAB>version<TAB>reason" */
const notApplicable = new Map(
  readFileSync(new URL('not-applicable.tsv', SPEC_DIR), 'utf8').trim().split('\n').slice(1)
    .map((line) => line.split('\t'))
    .map(([id, version, reason]) => [`${version} ${id}`, reason]),
);

let failed = false;
for (const v of VERSIONS) {
  const spec = readSpec(v.file);
  const kinds = args.has('--all') ? ['server', 'both', 'client'] : ['server'];
  for (const kind of kinds) {
    const rows = spec.filter((r) => r.appliesTo === kind);
    const na = rows.filter((r) => notApplicable.has(`${v.name} ${r.id}`));
    const covered = rows.filter((r) => named.get(r.id)?.[v.name].size > 0);
    const missing = rows.filter((r) => !(named.get(r.id)?.[v.name].size > 0) && !na.includes(r));
    const naNote = na.length > 0 ? `, ${na.length} not applicable` : '';
    console.log(`MQTT ${v.name}, applies to ${kind}: ${covered.length}/${rows.length} named by a test${naNote}, ${missing.length} missing`);
    for (const r of na) console.log(`  n/a     ${r.id}  ${notApplicable.get(`${v.name} ${r.id}`)}`);
    for (const r of missing) console.log(`  missing ${r.id}  ${r.statement.slice(0, 110)}`);
    if (args.has('--check') && v.name === '3.1.1' && kind === 'server' && missing.length > 0) failed = true;
  }
  const unknown = [...named.keys()].filter((id) => named.get(id)[v.name].size > 0 && !spec.some((r) => r.id === id));
  for (const id of unknown) console.log(`  unknown ID named for ${v.name}: ${id} (${[...named.get(id)[v.name]].join(', ')})`);
}
process.exit(failed ? 1 : 0);
