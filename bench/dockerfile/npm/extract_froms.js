// The comparison side of bench/dockerfile: parses every Dockerfile named on
// the command line (or found in the folders named) with dockerfile-ast, the
// parser behind the VS Code Docker extension, and prints one JSON document
// with each file's FROM images, their build-stage names and lines.
'use strict';
const fs = require('fs');
const path = require('path');
const { DockerfileParser } = require('dockerfile-ast');

function isDockerfileName(name) {
  return name === 'Dockerfile' || name.endsWith('.Dockerfile') || name.startsWith('Dockerfile.');
}

function collect(p, out) {
  const st = fs.statSync(p);
  if (!st.isDirectory()) { out.push(p); return; }
  const found = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) walk(full);
      else if (e.isFile() && isDockerfileName(e.name)) found.push(full);
    }
  };
  walk(p);
  found.sort();
  out.push(...found);
}

const files = [];
for (const arg of process.argv.slice(2)) collect(arg, files);
const result = { files: [] };
for (const file of files) {
  const doc = DockerfileParser.parse(fs.readFileSync(file, 'utf8'));
  const images = [];
  for (const from of doc.getFROMs()) {
    const platform = from.getPlatformFlag();
    images.push({
      image: from.getImage(),
      name: from.getImageName(),
      tag: from.getImageTag(),
      digest: from.getImageDigest(),
      stage: from.getBuildStage(),
      platform: platform ? platform.getValue() : null,
      line: from.getRange().start.line + 1,
    });
  }
  result.files.push({ path: file, images });
}
process.stdout.write(JSON.stringify(result, null, 2) + '\n');
