// node validate.js FILE: checks FILE against the SARIF 2.1.0 schema; prints
// the errors and exits 1 when it does not validate.
'use strict';
const fs = require('fs');
const path = require('path');
const ajvPath = require.resolve('ajv', { paths: [path.dirname(require.resolve('@microsoft/jest-sarif'))] });
const Ajv = require(ajvPath);
const schema = require('@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json');
// The schema is draft-04, which ajv 6 knows through its bundled meta-schema.
const ajv = new Ajv({ allErrors: true, schemaId: 'auto', meta: false });
ajv.addMetaSchema(require(path.join(path.dirname(ajvPath), 'refs', 'json-schema-draft-04.json')));
const validate = ajv.compile(schema);
const log = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
if (!validate(log)) {
  console.log(JSON.stringify(validate.errors, null, 2));
  process.exit(1);
}
console.log('valid SARIF ' + log.version + ': ' + path.basename(process.argv[2]));
