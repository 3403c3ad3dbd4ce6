// Trims Bootstrap Italia's stylesheet to the selectors Sportello's pages use (PurgeCSS, pinned in
// package.json): 600 KB become what the templates need. Run by .ci/setup whenever the templates,
// the Rust sources that name classes, or the lock file change; the portal serves static/dist/.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { PurgeCSS } from "purgecss";

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, "node_modules/bootstrap-italia/dist/css/bootstrap-italia.min.css");
const [result] = await new PurgeCSS().purge({
  content: [join(here, "../templates/**/*.html"), join(here, "../portal/src/**/*.rs"), join(here, "js/*.js")],
  css: [source],
  // States the pages reach without naming them in a template: focus rings, validation, the
  // visually-hidden helpers that become visible on focus.
  safelist: {
    standard: [/^is-(valid|invalid)$/, /^focus/, /^visually-hidden/, "active", "disabled", "show"],
  },
  keyframes: true,
  fontFace: true,
  variables: true,
});
await mkdir(join(here, "dist"), { recursive: true });
await writeFile(join(here, "dist/bootstrap-italia.css"), result.css);
const before = (await readFile(source)).length;
console.log(`setup: Bootstrap Italia trimmed to the pages' selectors: ${before} → ${result.css.length} bytes`);
