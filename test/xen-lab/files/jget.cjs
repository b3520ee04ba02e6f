// Tiny jq stand-in for the lab's dom0 (no jq there): node jget.cjs <path>... < doc.json
// prints one line per path (dot-separated keys and array indexes, e.g. protections.0.committed):
// the value, JSON for objects, an empty line when missing. Exit 1 when stdin is not JSON.
'use strict';
const fs = require('fs');
let doc;
try {
  doc = JSON.parse(fs.readFileSync(0, 'utf8'));
} catch {
  process.exit(1);
}
for (const p of process.argv.slice(2)) {
  let v = doc;
  for (const k of p.split('.').filter(Boolean)) v = v == null ? undefined : v[k];
  process.stdout.write((v == null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v)) + '\n');
}
