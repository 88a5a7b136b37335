// Writes workflow commands the way GitHub's own toolkit does, for tests that compare
// `policyc --format github` with it: reads a JSON array of
// {command: "error"|"warning"|"notice", message, properties: {title, file, startLine,
// endLine, startColumn, endColumn}} on stdin and calls @actions/core for each.
// @actions/core is installed by tools/test-all into target/tools/npm (NODE_PATH).
const core = require('@actions/core');

let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  for (const a of JSON.parse(input)) {
    core[a.command](a.message, a.properties);
  }
});
