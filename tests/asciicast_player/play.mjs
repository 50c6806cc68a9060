// Play a cast file through asciinema-player's own core, headless: its asciicast parser (v1,
// v2, v3), its recording preparation (timing, markers) and its playback driver, with no
// browser and no terminal widget. Prints one JSON document on stdout:
//   {"metadata": {...}, "size": {"cols", "rows"}, "duration": seconds,
//    "events": [["output", text] | ["input", text] | ["resize", {cols, rows}] |
//               ["marker", {index, time, label}], ...]}
// or, when the player refuses the file, {"error": message} with exit status 1.
//
// Usage: node play.mjs FILE.cast

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";

// The core is a hashed chunk of the package (dist/core-XXXX.js): find it through the
// package's entry module, whose first import names it.
const require = createRequire(import.meta.url);
const dist = dirname(require.resolve("asciinema-player"));
const entry = readFileSync(join(dist, "index.js"), "utf8");
const coreFile = /from '\.\/(core-[^']+\.js)'/.exec(entry)?.[1];
if (!coreFile) throw new Error("asciinema-player's core module not found in dist/index.js");
const { C: Core } = await import(join(dist, coreFile));

const text = readFileSync(process.argv[2], "utf8");
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
// A high speed plays a recording of minutes in a fraction of a second.
const core = new Core({ data: text }, { logger: quiet, speed: 10000, autoPlay: true, loop: false });
const seen = { metadata: null, size: null, events: [] };
const failed = new Promise((resolve) => core.addEventListener("error", resolve));
const ended = new Promise((resolve) => core.addEventListener("ended", resolve));
core.addEventListener("metadata", (m) => (seen.metadata = m));
core.addEventListener("reset", (r) => (seen.size = r.size));
core.addEventListener("output", (o) => seen.events.push(["output", [].concat(o).join("")]));
core.addEventListener("input", (i) => seen.events.push(["input", i.data]));
core.addEventListener("resize", (r) => seen.events.push(["resize", r]));
core.addEventListener("marker", (m) => seen.events.push(["marker", m]));
core.terminalReady(); // what the terminal widget would call once mounted

const outcome = await Promise.race([
  core.init().then(() => Promise.race([ended, failed])),
  failed,
]);
if (outcome && outcome.message) {
  console.log(JSON.stringify({ error: outcome.message }));
  process.exit(1);
}
console.log(JSON.stringify({ ...seen, duration: core.getDuration() }));
process.exit(0);
