#!/usr/bin/env node
// `npm run crash-farm -- --points N --seed S [--scenario NAME] [--json] [--log FILE]`: runs the crash farm
// (test/crash/farm.ts, built into dist/ by the npm script's build:ts step). See docs/reliability.md.
'use strict';
const path = require('path');
const fs = require('fs');

const farm = path.join(__dirname, '..', 'dist', 'test', 'crash', 'farm.js');
if (!fs.existsSync(farm)) {
  process.stderr.write(`crash-farm: ${farm} is missing; run npm run build:ts first\n`);
  process.exit(2);
}
require(farm).main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e) => {
  process.stderr.write(`crash-farm: ${(e && e.stack) || e}\n`);
  process.exitCode = 1;
});
